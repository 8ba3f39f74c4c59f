"""What minigpt's two byte-level BPE tokenizers share: the `Tokenizer` base and its helpers.

``minigpt.tokenizer.Encoding`` applies GPT-2's merges (tiktoken's API) and
``minigpt.bpe.BPETokenizer`` learns merges of its own; both turn text into ids the same way
around the merges, and this module holds that common part, as minbpe's ``base.py`` does:

- ``Tokenizer``: the base class. A subclass fills two tables, ``_decoder`` (id -> the token's
  bytes, a list) and ``_special_tokens`` (special token text -> id, a dict), and writes
  ``encode_ordinary`` (its own merges); the base gives ``n_vocab``, ``special_tokens_set``,
  ``encode`` with tiktoken's rules for special tokens, ``decode``, ``decode_bytes``,
  ``decode_single_token_bytes`` and ``decode_tokens_bytes``.
- the checks and the special-token rules they use: ``check_text``, ``check_ids``,
  ``resolve_special``, ``split_on_special``, ``special_token_error``;
- ``merge_by_rank``, BPE's merge loop in O(n log n) for long pieces (bytes for GPT-2's ranks,
  ids for a trained tokenizer), and ``HEAP_MERGE_MIN_BYTES``, the length from which both use it.

References:
    Sennrich et al. 2016, "Neural Machine Translation of Rare Words with Subword Units" (BPE);
    tiktoken's ``Encoding`` (``tiktoken/core.py``: the special-token rules and error text);
    Karpathy's minbpe, ``minbpe/base.py`` (a base class shared by the tokenizers);
    Raschka, "Build a Large Language Model (From Scratch)", section 2.5.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Set
from typing import Literal

import numpy as np
import regex

__all__ = [
    "Tokenizer",
    "HEAP_MERGE_MIN_BYTES",
    "merge_by_rank",
    "check_text",
    "check_ids",
    "resolve_special",
    "split_on_special",
    "special_token_error",
]

_INT_TYPE = frozenset({int})

# Pieces of at least this many bytes are merged by `merge_by_rank` (a heap, O(n log n)); shorter
# ones by the list scan of `Encoding.encode_piece`, which is O(n^2) but runs in C-level built-ins
# and is faster for the 1-10 byte pieces of ordinary text (measured on random lowercase words:
# equal speed at 16-32 bytes, the heap 1.8x faster at 128 bytes).
HEAP_MERGE_MIN_BYTES = 32

def merge_by_rank(parts: list, pair_rank, join) -> list:
    """Merge adjacent parts by rank, lowest rank first and leftmost among equal ranks, in O(n log n).

    This is BPE's merge loop (step 3 of the module docstring) for long pieces: a run of 100,000
    letters, digits or newlines is one pre-token. The parts form a doubly linked list (arrays
    ``next_index`` / ``previous_index`` over the original positions), and the candidate pairs
    sit in a heap keyed ``(rank, position of the left part)``: the heap's minimum is the lowest
    rank, and among equal ranks the leftmost pair, since positions keep their left-to-right
    order. A merge changes only the pairs on either side of the merged part; they get new heap
    entries, and old entries are skipped when popped ("lazy deletion": an entry is current only
    if its rank is still ``pair_ranks[position]``). Each merge costs O(log n), so a piece of n
    parts takes O(n log n), where rescanning the list for the minimum takes O(n^2).

    Worked example with ranks ab -> 0, bc -> 1, abc -> 2 (``join`` concatenates): parts
    ``[a, b, c]`` have pairs ab (0) and bc (1); ab wins -> ``[ab, c]``; the pair ab+c has rank
    2 -> ``[abc]``.

    Args:
        parts: the parts to merge (bytes for GPT-2's ranks, int ids for ``BPETokenizer``); the
            list is modified.
        pair_rank: ``pair_rank(left, right)`` -> the rank (int) of merging the two parts, or
            None when they do not merge.
        join: ``join(left, right, rank)`` -> the merged part.

    Returns:
        the merged parts, in order (a new list).

    References:
        tiktoken's merge rule (lowest rank, then leftmost), which this reproduces exactly;
        Sennrich et al. 2016 (BPE).
    """
    count = len(parts)
    # pair_ranks[i]: rank of the pair that starts at part i, None when it does not merge or
    # part i was merged into its left neighbour. The last part starts no pair.
    pair_ranks = [*map(pair_rank, parts, parts[1:]), None]
    # Heap entries are the keys (rank, position) packed into one int, rank * count + position:
    # they sort the same, and ints compare several times faster than tuples.
    heap = [rank * count + position for position, rank in enumerate(pair_ranks) if rank is not None]
    heapq.heapify(heap)
    next_index = list(range(1, count + 1))  # count means "no part on the right"
    previous_index = list(range(-1, count - 1))  # -1 means "no part on the left"
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        rank, left = divmod(pop(heap), count)
        if pair_ranks[left] != rank:  # stale: this pair changed or disappeared since its push
            continue
        right = next_index[left]
        merged = parts[left] = join(parts[left], parts[right], rank)
        parts[right] = pair_ranks[right] = None  # the right part is gone
        after = next_index[right]
        next_index[left] = after
        # The pair on the right of the merged part...
        if after < count:
            previous_index[after] = left
            new_rank = pair_ranks[left] = pair_rank(merged, parts[after])
            if new_rank is not None:
                push(heap, new_rank * count + left)
        else:
            pair_ranks[left] = None
        # ...and the pair on its left.
        before = previous_index[left]
        if before >= 0:
            new_rank = pair_ranks[before] = pair_rank(parts[before], merged)
            if new_rank is not None:
                push(heap, new_rank * count + before)
    return [part for part in parts if part is not None]


def special_token_error(token: str) -> ValueError:
    """The error for text that spells a special token the caller did not allow (as tiktoken)."""
    return ValueError(
        f"Encountered text corresponding to disallowed special token {token!r}.\n"
        f"If you want this text to be encoded as a special token, pass it to `allowed_special`, "
        f"e.g. `allowed_special={{{token!r}, ...}}`.\n"
        f"If you want this text to be encoded as normal text, disable the check for this token by "
        f"passing `disallowed_special=(enc.special_tokens_set - {{{token!r}}})`.\n"
        f"To disable this check for all special tokens, pass `disallowed_special=()`."
    )


def resolve_special(
    special_tokens: Set[str],
    allowed_special: Literal["all"] | Collection[str],
    disallowed_special: Literal["all"] | Collection[str],
) -> tuple[set[str], set[str]]:
    """Turn ``encode``'s two special-token arguments into two plain sets, as tiktoken does.

    Args:
        special_tokens: every special token the tokenizer knows.
        allowed_special: ``"all"`` or the special tokens to encode as their ids.
        disallowed_special: ``"all"`` (every special token not allowed) or the special tokens
            whose text raises ValueError; others are encoded as ordinary text.

    Returns:
        ``(allowed, disallowed)`` as sets of str.

    Raises:
        ValueError: if ``allowed_special`` names a token the tokenizer does not have.
    """
    allowed = set(special_tokens) if allowed_special == "all" else set(allowed_special)
    unknown = allowed - set(special_tokens)
    if unknown:
        raise ValueError(
            f"allowed_special names {sorted(unknown)}, which are not special tokens of this "
            f"tokenizer (its special tokens: {sorted(special_tokens)})"
        )
    if disallowed_special == "all":
        disallowed = set(special_tokens) - allowed
    else:
        disallowed = set(disallowed_special)
    return allowed, disallowed


def split_on_special(text: str, allowed: Set[str], disallowed: Set[str]) -> list[str]:
    """Check ``text`` for disallowed special tokens, then cut it around the allowed ones.

    Example:
        >>> split_on_special("a<|endoftext|>b", {"<|endoftext|>"}, set())
        ['a', '<|endoftext|>', 'b']

    Args:
        text: the text to encode.
        allowed: special tokens to cut out (they become their own ids).
        disallowed: special tokens that must not appear in ``text``.

    Returns:
        the ordinary chunks and the special tokens, alternating: ``result[0::2]`` are ordinary
        text (maybe empty), ``result[1::2]`` are special tokens.

    Raises:
        ValueError: if ``text`` contains a disallowed special token.
    """
    for token in disallowed:
        if token in text:
            raise special_token_error(token)
    if not allowed or not any(token in text for token in allowed):
        return [text]
    # Longest first, so that a special token that is the prefix of another cannot win.
    alternatives = "|".join(regex.escape(token) for token in sorted(allowed, key=len, reverse=True))
    return regex.split(f"({alternatives})", text)


def check_text(text: object) -> None:
    """Raise TypeError unless ``text`` is a str (bytes, None and lists are all mistakes)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}: {text!r:.80}")


def check_ids(ids: object, vocab_size: int) -> list[int]:
    """Return token ids as a list of Python ints, each checked to lie in ``[0, vocab_size)``.

    Args:
        ids: a sequence of ints or a 1-D integer NumPy array.
        vocab_size: number of tokens.

    Returns:
        list of int.

    Raises:
        TypeError: if ``ids`` is a str, or holds something that is not an integer.
        ValueError: if an id is negative or not below ``vocab_size``; the message names it.
    """
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"ids must be a sequence of int token ids, got {type(ids).__name__}")
    if isinstance(ids, np.ndarray):
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"ids must be a 1-D integer array, got shape {ids.shape} dtype {ids.dtype}")
        ids = ids.tolist()
    else:
        ids = list(ids)
        # bool is an int in Python, but never a token id; floats are never token ids either.
        if not _INT_TYPE.issuperset(map(type, ids)):  # one C-level pass; the loop below is rare
            for token_id in ids:
                if isinstance(token_id, bool) or not isinstance(token_id, (int, np.integer)):
                    raise TypeError(f"token ids must be ints, got {token_id!r} ({type(token_id).__name__})")
            ids = [int(token_id) for token_id in ids]
    if ids and (min(ids) < 0 or max(ids) >= vocab_size):
        bad = next(token_id for token_id in ids if not 0 <= token_id < vocab_size)
        raise ValueError(f"token id {bad} is out of range: ids must lie in [0, {vocab_size})")
    return ids


class Tokenizer:
    """The base of minigpt's byte-level BPE tokenizers: special tokens, decoding, vocabulary size.

    A subclass sets ``self._decoder`` (list: id -> the token's bytes; special tokens hold their
    UTF-8 text) and ``self._special_tokens`` (dict: special token text -> id), and defines
    ``encode_ordinary(text) -> list[int]``, its merges. Everything below is the same for GPT-2's
    fixed ranks (``minigpt.tokenizer.Encoding``) and learnt merges (``minigpt.bpe.BPETokenizer``).

    References:
        Karpathy's minbpe, ``base.py`` (the base class); tiktoken's ``Encoding`` (the API).
    """

    _decoder: list
    _special_tokens: dict

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text with the tokenizer's merges, special-token text as ordinary text (the subclass's)."""
        raise NotImplementedError(f"{type(self).__name__} must define encode_ordinary")

    # ----- vocabulary facts -------------------------------------------------------------------

    @property
    def n_vocab(self) -> int:
        """Number of token ids, ordinary and special: 50257 for GPT-2; 256 bytes + learnt merges
        + special tokens for a trained ``BPETokenizer``."""
        return len(self._decoder)

    @property
    def special_tokens_set(self) -> set[str]:
        """The text of every special token: ``{"<|endoftext|>"}`` for GPT-2."""
        return set(self._special_tokens)

    # ----- encoding ---------------------------------------------------------------------------

    def encode(
        self,
        text: str,
        *,
        allowed_special: Literal["all"] | Collection[str] = frozenset(),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> list[int]:
        """Encode text to token ids; special tokens only where explicitly allowed (as tiktoken).

        Text that spells a special token is an error by default, because a document that
        happens to contain ``"<|endoftext|>"`` would otherwise silently gain a document boundary.

        Example:
            >>> from minigpt.tokenizer import get_encoding
            >>> get_encoding("gpt2").encode("Hi<|endoftext|>", allowed_special={"<|endoftext|>"})
            [17250, 50256]

        Args:
            text: any str.
            allowed_special: ``"all"`` or the special tokens to encode as their ids.
            disallowed_special: ``"all"`` (default: every special token not allowed) or the
                special tokens whose text raises ValueError; the rest are encoded as text.

        Returns:
            list of int token ids.

        Raises:
            TypeError: if ``text`` is not a str.
            ValueError: if ``text`` contains a disallowed special token.
        """
        check_text(text)
        allowed, disallowed = resolve_special(self.special_tokens_set, allowed_special, disallowed_special)
        chunks = split_on_special(text, allowed, disallowed)
        token_ids: list[int] = []
        for index, chunk in enumerate(chunks):
            if index % 2:
                token_ids.append(self._special_tokens[chunk])
            elif chunk:
                token_ids += self.encode_ordinary(chunk)
        return token_ids

    # ----- decoding ---------------------------------------------------------------------------

    def decode_bytes(self, tokens: Iterable[int]) -> bytes:
        """Join the bytes of the tokens.

        Args:
            tokens: sequence of int ids or a 1-D integer NumPy array.

        Returns:
            bytes; not always valid UTF-8, as a token can hold part of a character.

        Raises:
            TypeError: if an id is not an int.
            ValueError: if an id is not in ``[0, n_vocab)``; the message names it.
        """
        return b"".join(map(self._decoder.__getitem__, check_ids(tokens, self.n_vocab)))

    def decode(self, tokens: Iterable[int], errors: str = "replace") -> str:
        """Decode token ids to text.

        Args:
            tokens: sequence of int ids or a 1-D integer NumPy array.
            errors: what to do with bytes that are not valid UTF-8 (``bytes.decode``'s
                ``errors``): ``"replace"`` (default) turns each bad sequence into U+FFFD, as when
                a multi-byte character is cut between two generated tokens; ``"strict"`` raises.

        Returns:
            str.

        Raises:
            TypeError: if an id is not an int.
            ValueError: if an id is not in ``[0, n_vocab)``; the message names it.
            UnicodeDecodeError: with ``errors="strict"`` and invalid UTF-8.
        """
        return self.decode_bytes(tokens).decode("utf-8", errors=errors)

    def decode_single_token_bytes(self, token: int) -> bytes:
        """The bytes of one token id.

        Raises:
            ValueError: if ``token`` is not in ``[0, n_vocab)``.
        """
        (token,) = check_ids([token], self.n_vocab)
        return self._decoder[token]

    def decode_tokens_bytes(self, tokens: Iterable[int]) -> list[bytes]:
        """The bytes of each token id, as a list (handy to show how a text was cut)."""
        return [self._decoder[token] for token in check_ids(tokens, self.n_vocab)]
