"""Training a byte-level BPE vocabulary of your own: ``BPETokenizer``.

``minigpt.tokenizer`` *applies* GPT-2's merges; this module *learns* merges from a text, the way
GPT-2's vocabulary was made, and then encodes and decodes with them.

Byte pair encoding (Sennrich et al. 2016, after Gage 1994) starts from the 256 byte values and
repeats one step: find the most frequent pair of adjacent tokens in the training text, and add
a new token that stands for that pair. Each step adds one token, until the vocabulary has the
size asked for. As in GPT-2, the text is first cut into pieces by a regular expression (the
GPT-2 or the GPT-4 pattern), and pairs are never counted across two pieces.

Training fast. A naive trainer recounts every pair of the whole text after every merge. Here:

1. the pieces are counted once: ``" the"`` appearing 7,000 times is one *word* with count
   7,000, so the work scales with the distinct words (15k for tinyshakespeare.txt), not the
   text (300k pieces);
2. the distinct words are laid end to end as one doubly linked list of ids (``symbols``, with
   ``next_index`` / ``previous_index``, -1 at a word's ends); ``pair_counts[pair]`` holds each
   pair's count and ``pair_places[pair]`` the positions where it starts. A merge visits only
   those positions and changes only the counts of the pairs on either side of each, so a word
   of 100,000 letters costs O(1) per occurrence of a merged pair, not O(its length) per merge;
3. the most frequent pair comes from a heap of ``(-count, pair)`` entries. A count that changes
   gets a new entry and the old one is left in place ("lazy deletion"): an entry popped whose
   count is not the pair's current count is stale and skipped.

Tie-breaking is deterministic: among pairs of equal count, the pair ``(first id, second id)``
that sorts first wins (the heap's order). The result does not depend on hash seeds, dict order
or the order of the words in the text.

Encoding with learnt merges applies them in the order they were learnt (lowest new id first),
which reproduces exactly how training cut the training text.

File format (``save``/``load``), UTF-8 text, version 1::

    minigpt-bpe 1
    pattern "<the split regex, as a JSON string>"
    special_tokens <S>
    "<special token as a JSON string>" <id>        (S lines)
    merges <M>
    <first id> <second id>                          (M lines; line i makes token 256 + i)

References:
    Sennrich, Haddow & Birch 2016, "Neural Machine Translation of Rare Words with Subword Units".
    Radford et al. 2019 (GPT-2), section 2.2. Raschka, "Build a Large Language Model (From
    Scratch)", section 2.5. The GPT-4 pattern is tiktoken's ``cl100k_base`` split pattern.
"""

from __future__ import annotations

import heapq
import json
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import regex
from tqdm import tqdm

from minigpt.tokenizer import GPT2_SPLIT_PATTERN
from minigpt.tokenizer_base import HEAP_MERGE_MIN_BYTES, Tokenizer, check_text, merge_by_rank

__all__ = ["BPETokenizer", "GPT4_SPLIT_PATTERN", "SPLIT_PATTERNS", "merge_pair"]

# GPT-4's pattern (tiktoken cl100k_base): contractions in any case, letters with at most one
# leading non-letter, numbers cut into groups of at most 3 digits, punctuation runs with their
# trailing newlines, and newlines kept apart from other whitespace.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)

SPLIT_PATTERNS = {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN}

FORMAT_NAME = "minigpt-bpe"
FORMAT_VERSION = 1

# Rank of a pair that is not a learnt merge: above every real token id.
_NO_MERGE = 1 << 62


def merge_pair(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids``, left to right, by ``new_id``.

    Occurrences do not overlap: scanning left to right, a merged pair's ids are used up.

    Example:
        >>> merge_pair([1, 2, 3, 1, 2], (1, 2), 9)
        [9, 3, 9]
        >>> merge_pair([5, 5, 5], (5, 5), 9)
        [9, 5]

    Args:
        ids: token ids of one word.
        pair: the two ids to merge, in order.
        new_id: the id of the merged token.

    Returns:
        a new list of ids.
    """
    first, second = pair
    merged: list[int] = []
    index = 0
    while index < len(ids):
        if ids[index] == first and index + 1 < len(ids) and ids[index + 1] == second:
            merged.append(new_id)
            index += 2
        else:
            merged.append(ids[index])
            index += 1
    return merged


class BPETokenizer(Tokenizer):
    """A byte-level BPE tokenizer that learns its merges from text.

    ``encode`` (special tokens as tiktoken), ``decode``, ``decode_bytes`` and ``n_vocab`` come
    from the base it shares with GPT-2's ``Encoding``, ``minigpt.tokenizer_base.Tokenizer``;
    this class adds training, encoding with learnt merges, and ``save`` / ``load``.

    Example:
        >>> tokenizer = BPETokenizer(pattern="gpt2", special_tokens=["<|endoftext|>"])
        >>> tokenizer.train("low lower lowest newer wider", vocab_size=262)
        >>> tokenizer.decode(tokenizer.encode("lowest"))
        'lowest'

    Ids: 0-255 are the bytes, ``256 + i`` is the token made by merge ``i``, and the special
    tokens come last, in the order given (as GPT-2's ``<|endoftext|>`` is its last id, 50256).

    Args:
        pattern: ``"gpt2"``, ``"gpt4"`` or a regular expression (``regex`` module syntax) that
            cuts text into pieces before BPE.
        special_tokens: texts (``"<|endoftext|>"``) that are tokens of their own, never learnt
            from the text, and encoded only where ``encode`` allows them.

    Raises:
        ValueError: if ``pattern`` does not compile, or a special token is empty or repeated.
    """

    def __init__(self, pattern: str = "gpt2", special_tokens: Iterable[str] = ()):
        self.pattern = SPLIT_PATTERNS.get(pattern, pattern)
        try:
            self._compiled_pattern = regex.compile(self.pattern)
        except regex.error as error:
            raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {error}") from None
        special_tokens = list(special_tokens)
        if any(not isinstance(token, str) or not token for token in special_tokens):
            raise ValueError(f"special tokens must be non-empty str, got {special_tokens!r}")
        if len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"special tokens repeat: {special_tokens!r}")
        self._special_token_texts = special_tokens
        self._set_merges({})

    def _set_merges(self, merges: dict[tuple[int, int], int]) -> None:
        """Install merges (pair -> new id, ids 256, 257, ... in order) and rebuild the tables."""
        self.merges = dict(merges)
        vocab = [bytes([byte]) for byte in range(256)]
        for (first, second), new_id in self.merges.items():
            if new_id != len(vocab) or max(first, second) >= new_id:
                raise ValueError(f"merge {(first, second)} -> {new_id} is out of order")
            vocab.append(vocab[first] + vocab[second])
        # Special tokens take the ids after the learnt ones.
        self.special_tokens = {text: len(vocab) + index for index, text in enumerate(self._special_token_texts)}
        vocab += [text.encode("utf-8") for text in self._special_token_texts]
        self.vocab = vocab
        # The base class's tables (the same objects): id -> bytes, special text -> id.
        self._decoder, self._special_tokens = self.vocab, self.special_tokens
        self._cache: dict[str, tuple[int, ...]] = {}

    def __repr__(self) -> str:
        return (
            f"BPETokenizer(vocab_size={self.n_vocab}, merges={len(self.merges)}, "
            f"special_tokens={self._special_token_texts!r})"
        )

    # ----- training ---------------------------------------------------------------------------

    def train(self, text: str, vocab_size: int, verbose: bool = False) -> None:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``.

        Replaces any merges learnt before. Special tokens' text in ``text`` is treated as
        ordinary text (cut it out first if it must not shape the vocabulary).

        Args:
            text: the training text.
            vocab_size: the size of the vocabulary wanted, counting the 256 bytes and the
                special tokens.
            verbose: show a progress bar (tqdm) with the merges done.

        Raises:
            TypeError: if ``text`` is not a str.
            ValueError: if ``vocab_size`` leaves no room for the bytes and special tokens.

        Warns:
            UserWarning: if the text runs out of pairs before ``vocab_size`` is reached; the
                vocabulary is then smaller.
        """
        check_text(text)
        minimum = 256 + len(self._special_token_texts)
        if not isinstance(vocab_size, int) or vocab_size < minimum:
            raise ValueError(
                f"vocab_size must be an int >= {minimum} (256 bytes + {len(self._special_token_texts)} "
                f"special tokens), got {vocab_size!r}"
            )
        num_merges = vocab_size - minimum

        # 1. Distinct pieces ("words") and how often each occurs, laid end to end as one linked
        # list of byte ids; the links stop at each word's ends, so no pair crosses two words.
        word_counts = Counter(self._compiled_pattern.findall(text))
        symbols: list[int | None] = []  # the ids; None where a part was merged into its left neighbour
        place_counts: list[int] = []  # the count of the word each position belongs to
        for word, count in word_counts.items():
            symbols += word.encode("utf-8")
            place_counts += [count] * (len(symbols) - len(place_counts))
        next_index = list(range(1, len(symbols) + 1))
        previous_index = list(range(-1, len(symbols) - 1))
        start = 0
        for word in word_counts:
            end = start + len(word.encode("utf-8"))
            previous_index[start], next_index[end - 1] = -1, -1
            start = end

        # 2. Count of every adjacent pair over the whole text, and the positions where it starts.
        pair_counts: defaultdict[tuple[int, int], int] = defaultdict(int)
        pair_places: defaultdict[tuple[int, int], set[int]] = defaultdict(set)
        for place, after in enumerate(next_index):
            if after >= 0:
                pair = (symbols[place], symbols[after])
                pair_counts[pair] += place_counts[place]
                pair_places[pair].add(place)

        # 3. Max-heap of (-count, pair): heapq is a min-heap, and on equal counts the smaller pair
        # comes first, which is the documented tie-break.
        heap = [(-count, pair) for pair, count in pair_counts.items()]
        heapq.heapify(heap)

        merges: dict[tuple[int, int], int] = {}
        # disable only when asked: otherwise tqdm's own TQDM_DISABLE=1 environment variable decides
        quiet = {} if verbose else {"disable": True}
        with tqdm(total=num_merges, desc="BPE merges", unit="merge", **quiet) as progress:
            for new_id in range(256, 256 + num_merges):
                best_pair = None
                while heap:
                    negative_count, pair = heapq.heappop(heap)
                    if pair_counts.get(pair, 0) == -negative_count:  # else stale: skip it
                        best_pair = pair
                        break
                if best_pair is None:
                    warnings.warn(
                        f"the text has no pairs left after {len(merges)} merges: the vocabulary "
                        f"has {256 + len(merges) + len(self._special_token_texts)} tokens, not {vocab_size}",
                        stacklevel=2,
                    )
                    break
                merges[best_pair] = new_id
                self._apply_merge(best_pair, new_id, symbols, next_index, previous_index, place_counts,
                                  pair_counts, pair_places, heap)
                progress.update(1)
        self._set_merges(merges)

    @staticmethod
    def _apply_merge(
        pair: tuple[int, int],
        new_id: int,
        symbols: list[int | None],
        next_index: list[int],
        previous_index: list[int],
        place_counts: list[int],
        pair_counts: defaultdict[tuple[int, int], int],
        pair_places: defaultdict[tuple[int, int], set[int]],
        heap: list[tuple[int, tuple[int, int]]],
    ) -> None:
        """Merge ``pair`` into ``new_id`` at every place that holds it, updating the counts.

        The places are visited left to right, so overlapping occurrences merge as
        :func:`merge_pair` does (``a a a`` -> ``(a a) a``). At each, the pair itself, the pair
        on its left and the pair on its right lose the word's count, and the two new pairs around
        ``new_id`` gain it; only those pairs get a new heap entry. A place recorded under a pair
        that has changed since is recognised by its ids and skipped.
        """
        first, second = pair
        count_changes: defaultdict[tuple[int, int], int] = defaultdict(int)
        for place in sorted(pair_places.pop(pair)):
            right = next_index[place]
            if symbols[place] != first or right < 0 or symbols[right] != second:
                continue  # stale: an earlier merge took one of its ids
            count = place_counts[place]
            count_changes[pair] -= count
            before, after = previous_index[place], next_index[right]
            if before >= 0:  # (x, first) becomes (x, new_id)
                left_pair = (symbols[before], first)
                count_changes[left_pair] -= count
                pair_places.get(left_pair, set()).discard(before)
                count_changes[symbols[before], new_id] += count
                pair_places[symbols[before], new_id].add(before)
            if after >= 0:  # (second, y) becomes (new_id, y)
                right_pair = (second, symbols[after])
                count_changes[right_pair] -= count
                pair_places.get(right_pair, set()).discard(right)
                count_changes[new_id, symbols[after]] += count
                pair_places[new_id, symbols[after]].add(place)
                previous_index[after] = place
            symbols[place], symbols[right] = new_id, None
            next_index[place] = after
        for changed_pair, change in count_changes.items():
            if change == 0:
                continue
            new_count = pair_counts[changed_pair] + change
            if new_count > 0:
                pair_counts[changed_pair] = new_count
                heapq.heappush(heap, (-new_count, changed_pair))
            else:
                del pair_counts[changed_pair]

    # ----- encoding ---------------------------------------------------------------------------

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        """Apply the learnt merges to one piece, lowest new id first (the order of training).

        Worked example, merges ``(l, o) -> 256`` then ``(256, w) -> 257``, piece ``"lowlo"``:
        bytes ``[l, o, w, l, o]`` -> both ``(l, o)`` become 256 -> ``[256, w, 256]`` -> the first
        ``(256, w)`` becomes 257 -> ``[257, 256]``.

        Long pieces (32 bytes or more: a run of letters, digits, newlines...) go through
        ``minigpt.tokenizer.merge_by_rank`` in O(n log n); short ones rescan a list, O(n^2) but
        faster for a few bytes. Both give the same ids.
        """
        merges = self.merges
        ids = list(piece.encode("utf-8"))
        if len(ids) >= HEAP_MERGE_MIN_BYTES:
            get = merges.get
            return tuple(merge_by_rank(ids, lambda left, right: get((left, right)), lambda left, right, rank: rank))
        # pair_ranks[i] is the merge id of (ids[i], ids[i + 1]), or _NO_MERGE.
        pair_ranks = [merges.get(pair, _NO_MERGE) for pair in zip(ids, ids[1:])]
        while pair_ranks:
            best_rank = min(pair_ranks)
            if best_rank == _NO_MERGE:
                break
            index = pair_ranks.index(best_rank)  # leftmost first = left to right, as training
            ids[index] = best_rank
            del ids[index + 1], pair_ranks[index]
            if index > 0:
                pair_ranks[index - 1] = merges.get((ids[index - 1], best_rank), _NO_MERGE)
            if index < len(pair_ranks):
                pair_ranks[index] = merges.get((best_rank, ids[index + 1]), _NO_MERGE)
        return tuple(ids)

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text with the learnt merges, treating special-token text as ordinary text.

        Raises:
            TypeError: if ``text`` is not a str.
        """
        check_text(text)
        cache = self._cache
        token_ids: list[int] = []
        for piece in self._compiled_pattern.findall(text):
            piece_ids = cache.get(piece)
            if piece_ids is None:
                piece_ids = cache[piece] = self._encode_piece(piece)
            token_ids += piece_ids
        return token_ids

    # ----- saving and loading -----------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the tokenizer to ``path`` in the text format of the module docstring."""
        lines = [
            f"{FORMAT_NAME} {FORMAT_VERSION}",
            f"pattern {json.dumps(self.pattern)}",
            f"special_tokens {len(self.special_tokens)}",
            *(f"{json.dumps(text)} {token_id}" for text, token_id in self.special_tokens.items()),
            f"merges {len(self.merges)}",
            *(f"{first} {second}" for first, second in self.merges),
        ]
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> BPETokenizer:
        """Read a tokenizer written by :meth:`save`.

        Raises:
            ValueError: if the file is not this format, is of another version, or is
                inconsistent (a count that does not match, ids out of order); the message names
                the file and the line.
        """
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        position = 0

        def next_line(expected: str) -> str:
            nonlocal position
            if position >= len(lines):
                raise ValueError(f"{path}: file ends early, expected {expected}")
            position += 1
            return lines[position - 1]

        def field(key: str) -> str:
            line = next_line(f"'{key} ...'")
            name, _, value = line.partition(" ")
            if name != key:
                raise ValueError(f"{path}, line {position}: expected '{key} ...', got {line!r}")
            return value

        version = field(FORMAT_NAME)
        if version != str(FORMAT_VERSION):
            raise ValueError(f"{path}: format version {version!r}, but this code reads version {FORMAT_VERSION}")
        try:
            pattern = json.loads(field("pattern"))
            special_tokens = []
            special_ids = []
            for _ in range(int(field("special_tokens"))):
                text, _, token_id = next_line("a special token").rpartition(" ")
                special_tokens.append(json.loads(text))
                special_ids.append(int(token_id))
            merges = {}
            for new_id in range(256, 256 + int(field("merges"))):
                first, second = next_line("a merge").split(" ")
                merges[(int(first), int(second))] = new_id
        except (json.JSONDecodeError, ValueError) as error:
            raise ValueError(f"{path}, line {position}: {error}") from None
        tokenizer = cls(pattern=pattern, special_tokens=special_tokens)
        tokenizer._set_merges(merges)
        if list(tokenizer.special_tokens.values()) != special_ids:
            raise ValueError(
                f"{path}: special token ids {special_ids} do not follow the {len(merges)} merges "
                f"(expected {list(tokenizer.special_tokens.values())})"
            )
        return tokenizer
