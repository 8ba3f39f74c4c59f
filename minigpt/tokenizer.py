"""GPT-2's byte-level BPE tokenizer, exact to OpenAI's: ``get_encoding("gpt2")``.

Book chapter 2 (section 2.5, "Byte pair encoding") uses ``tiktoken.get_encoding("gpt2")``; this
module is that tokenizer written out in Python, and gives the same ids as tiktoken on every input.
``minigpt.simple_tokenizer`` has the chapter's word-level tokenizers that come before it, and
``minigpt.bpe`` adds *training* a vocabulary of your own; what the two BPE tokenizers do alike
(special tokens, decoding, the O(n log n) merge of long pieces) is ``minigpt.tokenizer_base``.

How GPT-2 turns text into ids, in three steps:

1. **Pre-tokenization.** A regular expression cuts the text into pieces ("pre-tokens"): words
   with their leading space (``" hello"``), runs of digits, runs of punctuation, whitespace, and
   the English contractions (``"'s"``). BPE never merges across two pieces.
2. **Bytes.** Each piece is encoded to UTF-8; the 256 byte values are the first 256 tokens, so
   any text at all can be encoded (no unknown token).
3. **Merges by rank.** Starting from single bytes, repeatedly join the adjacent pair whose
   joined bytes are the *lowest-ranked* token of the vocabulary, until no adjacent pair joins
   into a token. A token's rank is its id: the order in which GPT-2's training learnt it.

The vocabulary is package data: ``minigpt/vocab/gpt2/encoder.json`` (token string -> id) and
``vocab.bpe`` (the 50,000 merges in order), from OpenAI's GPT-2 release (MIT licence), plus the
same ranks in tiktoken's file format, ``gpt2.tiktoken``. Nothing is downloaded.

Speed. Natural text repeats its pieces (tinyshakespeare.txt has 298k pieces, 15k distinct), so
each distinct piece is merged once and its ids are kept in a cache; most pieces are themselves
a token (``" the"``), and take a single dictionary lookup. A long piece (a run of 100,000
letters, digits, newlines or emoji is one piece) is merged by :func:`merge_by_rank` in
O(n log n), so no input makes encoding quadratic.

References:
    Radford et al. 2019, "Language Models are Unsupervised Multitask Learners", section 2.2
    (byte-level BPE). Sennrich et al. 2016, "Neural Machine Translation of Rare Words with
    Subword Units" (BPE). OpenAI's gpt-2 repository, ``src/encoder.py`` (``bytes_to_unicode``
    and the pattern). tiktoken's ``Encoding`` (the API and the merge-by-rank rule matched here).
    Raschka, "Build a Large Language Model (From Scratch)", section 2.5.
"""

from __future__ import annotations

import base64
import gc
import json
import sys
from collections.abc import Collection
from itertools import chain, repeat
from pathlib import Path
from typing import Literal

import regex

from minigpt.tokenizer_base import HEAP_MERGE_MIN_BYTES, Tokenizer, check_text, merge_by_rank

__all__ = [
    "GPT2_SPLIT_PATTERN",
    "ENDOFTEXT",
    "Encoding",
    "get_encoding",
    "bytes_to_unicode",
    "load_gpt2_vocabulary",
    "load_tiktoken_ranks",
    "merge_by_rank",
]

# GPT-2's pre-tokenization pattern (OpenAI gpt-2, src/encoder.py). The contractions are written
# as tiktoken writes them, "'(?:[sdmt]|ll|ve|re)": the same seven alternatives as GPT-2's
# "'s|'t|'re|'ve|'m|'ll|'d", and a little faster to match.
#   ' ?\p{L}+'        a run of letters with at most one leading space: " hello"
#   ' ?\p{N}+'        a run of digits, the same way: " 2024"
#   ' ?[^\s\p{L}\p{N}]+'  a run of other symbols: " ..."
#   '\s+(?!\S)'       whitespace, leaving the last space to the word after it: "   x" -> "  ", " x"
#   '\s+'             whitespace at the end of the text
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

ENDOFTEXT = "<|endoftext|>"

VOCAB_DIR = Path(__file__).resolve().parent / "vocab" / "gpt2"

# A pair whose joined bytes are not a token gets this rank, larger than any real rank, so that
# ``min`` over a list of pair ranks never picks it while a real merge is left.
_NO_MERGE = sys.maxsize

# The 256 one-byte bytes objects, made once: bytes value -> bytes([value]).
_SINGLE_BYTES = [bytes([value]) for value in range(256)]

# Above this many distinct pieces the cache is emptied before the next encode, so that encoding
# an endless stream of new text cannot use unbounded memory (about 100 bytes per entry).
_CACHE_LIMIT = 1_000_000


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's table from each byte value to a printable unicode character.

    GPT-2's files store tokens as text, so every byte needs a visible character: the 188 bytes
    that are already printable (``!`` to ``~``, ``¡`` to ``¬``, ``®`` to ``ÿ``) stand for
    themselves, and the other 68 (control characters, space, ...) are moved to the characters
    256, 257, ... in byte order. Space (byte 32) becomes ``"Ġ"`` (U+0120), newline ``"Ċ"``.

    Example:
        >>> table = bytes_to_unicode()
        >>> table[ord("a")], table[ord(" ")], table[ord("\\n")]
        ('a', 'Ġ', 'Ċ')

    Returns:
        dict mapping each of the 256 byte values to a one-character str.

    References:
        OpenAI gpt-2, ``src/encoder.py``, ``bytes_to_unicode``.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {byte: chr(byte) for byte in printable}
    next_code_point = 256
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(next_code_point)
            next_code_point += 1
    return table


def load_gpt2_vocabulary(encoder_path: str | Path, merges_path: str | Path) -> dict[bytes, int]:
    """Read GPT-2's ``encoder.json`` + ``vocab.bpe`` into mergeable ranks (token bytes -> id).

    ``vocab.bpe`` lists the merges in the order training learnt them (``"Ġ t"``, ``"Ġ a"``,
    ``"h e"``, ...); the 256 single bytes come first, so merge ``i`` makes token ``256 + i``.
    ``encoder.json`` maps each token, spelled with :func:`bytes_to_unicode`, to its id. The two
    files must tell the same story, and this function checks that they do.

    Args:
        encoder_path: path to ``encoder.json``.
        merges_path: path to ``vocab.bpe`` (a ``#version`` line, then one merge per line).

    Returns:
        dict from each ordinary token's bytes to its id, 50,256 entries for GPT-2 (the special
        token ``<|endoftext|>`` is in ``encoder.json`` but is not mergeable, and is left out).

    Raises:
        ValueError: if the merges and the encoder disagree about a token's id.
    """
    byte_of_character = {character: byte for byte, character in bytes_to_unicode().items()}

    def to_bytes(token: str) -> bytes:
        return bytes(byte_of_character[character] for character in token)

    with open(encoder_path, encoding="utf-8") as file:
        encoder: dict[str, int] = json.load(file)
    with open(merges_path, encoding="utf-8") as file:
        merge_lines = [line for line in file.read().split("\n")[1:] if line]

    # Ranks in the order GPT-2 defines them: the 256 bytes in bytes_to_unicode's order of
    # characters (which is how encoder.json numbers them), then one new token per merge.
    ranks = {to_bytes(character): rank for rank, character in enumerate(bytes_to_unicode().values())}
    for line in merge_lines:
        first, second = line.split(" ")
        ranks[to_bytes(first) + to_bytes(second)] = len(ranks)

    for token, token_id in encoder.items():
        if token == ENDOFTEXT:
            continue
        token_bytes = to_bytes(token)
        if ranks.get(token_bytes) != token_id:
            raise ValueError(
                f"encoder {encoder_path} gives token {token!r} the id {token_id}, but the merges in "
                f"{merges_path} give it {ranks.get(token_bytes)}"
            )
    if len(ranks) != len(encoder) - (ENDOFTEXT in encoder):
        raise ValueError(
            f"{merges_path} defines {len(ranks)} tokens but {encoder_path} has {len(encoder)} entries"
        )
    return ranks


def load_tiktoken_ranks(path: str | Path) -> dict[bytes, int]:
    """Read a tiktoken-format ranks file: one ``<base64 of token bytes> <rank>`` per line.

    Example line: ``IQ== 0`` is token ``b"!"`` with rank (id) 0.

    Args:
        path: path to the file, e.g. ``minigpt/vocab/gpt2/gpt2.tiktoken``.

    Returns:
        dict from each token's bytes to its rank.

    Raises:
        ValueError: if a line is not two fields, or a token appears twice.
    """
    ranks: dict[bytes, int] = {}
    with open(path, "rb") as file:
        for line_number, line in enumerate(file.read().splitlines(), start=1):
            if not line:
                continue
            fields = line.split()
            if len(fields) != 2:
                raise ValueError(f"{path}, line {line_number}: expected '<base64> <rank>', got {line!r}")
            token = base64.b64decode(fields[0])
            if token in ranks:
                raise ValueError(f"{path}, line {line_number}: token {token!r} appears twice")
            ranks[token] = int(fields[1])
    return ranks


class _PieceCache(dict):
    """dict from a pre-token piece (str) to its token ids (tuple of int), filled on first use.

    ``cache[piece]`` merges a piece it has not seen (``__missing__``) and keeps the answer, so
    encoding is one C-level ``map(cache.__getitem__, pieces)`` with no Python branch per piece.
    """

    def __init__(self, encoding: Encoding):
        super().__init__()
        self.encoding = encoding

    def __missing__(self, piece: str) -> tuple[int, ...]:
        token_ids = self.encoding.encode_piece(piece.encode("utf-8"))
        self[piece] = token_ids
        return token_ids


class Encoding(Tokenizer):
    """A byte-level BPE tokenizer with tiktoken's API: ``encode``, ``decode``, ``n_vocab``...

    What it shares with ``minigpt.bpe.BPETokenizer`` (``encode``'s special tokens, ``decode`` and
    its friends, ``n_vocab``) is in their base, ``minigpt.tokenizer_base.Tokenizer``; this class
    adds GPT-2's merge by rank, the piece cache, and tiktoken's batch and single-token methods.
    Built from mergeable ranks (token bytes -> id, the single bytes included) and special tokens;
    :func:`get_encoding` builds GPT-2's.

    Args:
        name: a name for messages and ``repr``, e.g. ``"gpt2"``.
        pat_str: the pre-tokenization regular expression (the ``regex`` module's syntax).
        mergeable_ranks: dict from token bytes to id; must contain all 256 single bytes.
        special_tokens: dict from special token text (``"<|endoftext|>"``) to id.

    Raises:
        ValueError: if a single byte is missing from ``mergeable_ranks``, or two tokens share
            an id.

    References:
        tiktoken ``Encoding`` (``tiktoken/core.py``), whose methods and arguments this mirrors.
    """

    def __init__(
        self,
        name: str,
        *,
        pat_str: str,
        mergeable_ranks: dict[bytes, int],
        special_tokens: dict[str, int],
    ):
        missing = [byte for byte in range(256) if bytes([byte]) not in mergeable_ranks]
        if missing:
            raise ValueError(f"mergeable_ranks lacks the single bytes {missing[:10]} (of {len(missing)})")
        self.name = name
        self._pat_str = pat_str
        self._pattern = regex.compile(pat_str)
        self._mergeable_ranks = dict(mergeable_ranks)
        self._special_tokens = dict(special_tokens)
        self.max_token_value = max([*mergeable_ranks.values(), *special_tokens.values()])

        # id -> bytes, one list slot per id, so that decoding is a list lookup per id.
        decoder: list[bytes | None] = [None] * (self.max_token_value + 1)
        for token, token_id in chain(mergeable_ranks.items(), ((s.encode("utf-8"), i) for s, i in special_tokens.items())):
            if decoder[token_id] is not None:
                raise ValueError(f"tokens {decoder[token_id]!r} and {token!r} both have id {token_id}")
            decoder[token_id] = token
        self._decoder = decoder
        self._cache = _PieceCache(self)

    def __repr__(self) -> str:
        return f"<Encoding {self.name!r}>"

    # ----- vocabulary facts -------------------------------------------------------------------

    @property
    def eot_token(self) -> int:
        """The id of ``<|endoftext|>`` (50256 for GPT-2), which separates documents."""
        return self._special_tokens[ENDOFTEXT]

    # ----- encoding ---------------------------------------------------------------------------

    def encode_piece(self, piece: bytes) -> tuple[int, ...]:
        """Merge one pre-token's bytes into token ids by rank (step 3 of the module docstring).

        Worked example with GPT-2's ranks, piece ``b" lower"``: the bytes start apart,
        ``[" ", "l", "o", "w", "e", "r"]``; the adjacent pair whose join has the lowest rank is
        merged first, and its two neighbours' pairs are re-ranked; this repeats until no
        adjacent pair joins into a token. The result here is the single token ``" lower"``.
        Ties go to the leftmost pair, as in tiktoken.

        Pieces shorter than 32 bytes are merged by rescanning a list of pair ranks (C-level
        ``min`` and ``index``, fastest for short pieces); longer ones, such as a run of 100,000
        letters, by :func:`merge_by_rank` in O(n log n).

        Args:
            piece: the UTF-8 bytes of one pre-token.

        Returns:
            tuple of token ids whose bytes concatenate to ``piece``.
        """
        ranks = self._mergeable_ranks
        get = ranks.get
        whole = get(piece)
        if whole is not None:  # most pieces are themselves a token: " the", " and", "\n"
            return (whole,)
        parts = list(map(_SINGLE_BYTES.__getitem__, piece))
        if len(piece) >= HEAP_MERGE_MIN_BYTES:
            parts = merge_by_rank(parts, lambda left, right: get(left + right), lambda left, right, rank: left + right)
            return tuple(map(ranks.__getitem__, parts))
        # The loop below is the hot path of a first encode, so it leans on C-level built-ins
        # (map, min, list.index) rather than Python loops; it is O(n^2), for short pieces only.
        # pair_ranks[i] is the rank of parts[i] + parts[i + 1], or _NO_MERGE if not a token.
        pair_ranks = list(map(get, map(bytes.__add__, parts, parts[1:]), repeat(_NO_MERGE)))
        while True:
            best_rank = min(pair_ranks)
            if best_rank == _NO_MERGE:
                break
            index = pair_ranks.index(best_rank)  # the leftmost of equal ranks, as in tiktoken
            merged = parts[index] + parts[index + 1]
            parts[index] = merged
            del parts[index + 1], pair_ranks[index]
            # Only the two pairs that touch the merged part changed: the one on its left...
            if index > 0:
                pair_ranks[index - 1] = get(parts[index - 1] + merged, _NO_MERGE)
            # ...and the one on its right, if there is a part on its right.
            if index < len(pair_ranks):
                pair_ranks[index] = get(merged + parts[index + 1], _NO_MERGE)
            elif index == 0:  # the whole piece became one part: nothing left to merge
                break
        return tuple(map(ranks.__getitem__, parts))

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text, treating special-token text like any other text.

        Example:
            >>> get_encoding("gpt2").encode_ordinary("Hello world")
            [15496, 995]

        Args:
            text: any str.

        Returns:
            list of int token ids.

        Lone surrogates (U+D800 to U+DFFF, which have no UTF-8 form) are encoded as U+FFFD, as
        tiktoken does.

        Raises:
            TypeError: if ``text`` is not a str.
        """
        check_text(text)
        if len(self._cache) > _CACHE_LIMIT:
            self._cache.clear()
        # NOTE: Python's cycle collector runs after every few hundred new container objects, and
        # each run walks the young objects, here the list of all pieces (300k for 1 MB of
        # text). Encoding creates many tuples and no reference cycles, so the collector is paused
        # while it runs: a first encode of tinyshakespeare.txt goes about 1.3x faster.
        collector_was_enabled = gc.isenabled()
        gc.disable()
        try:
            pieces = self._pattern.findall(text)
            return list(chain.from_iterable(map(self._cache.__getitem__, pieces)))
        except UnicodeEncodeError:
            # A lone surrogate (half of a UTF-16 pair, e.g. from a bad decode) has no UTF-8 bytes.
            # As tiktoken does, replace each with U+FFFD and encode again.
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            return list(chain.from_iterable(map(self._cache.__getitem__, self._pattern.findall(text))))
        finally:
            if collector_was_enabled:
                gc.enable()

    def encode_batch(
        self,
        text: list[str],
        *,
        allowed_special: Literal["all"] | Collection[str] = frozenset(),
        disallowed_special: Literal["all"] | Collection[str] = "all",
    ) -> list[list[int]]:
        """Encode each str of a list with :meth:`encode` (one thread; the cache is shared)."""
        if isinstance(text, str):
            raise TypeError("encode_batch takes a list of str; use encode for a single str")
        return [
            self.encode(item, allowed_special=allowed_special, disallowed_special=disallowed_special)
            for item in text
        ]

    def encode_ordinary_batch(self, text: list[str]) -> list[list[int]]:
        """Encode each str of a list with :meth:`encode_ordinary`."""
        if isinstance(text, str):
            raise TypeError("encode_ordinary_batch takes a list of str; use encode_ordinary for a single str")
        return [self.encode_ordinary(item) for item in text]

    def encode_single_token(self, text_or_bytes: str | bytes) -> int:
        """The id of a text or bytes that is exactly one token.

        Raises:
            KeyError: if it is not a single token (as tiktoken).
        """
        if isinstance(text_or_bytes, str):
            if text_or_bytes in self._special_tokens:
                return self._special_tokens[text_or_bytes]
            text_or_bytes = text_or_bytes.encode("utf-8")
        return self._mergeable_ranks[text_or_bytes]

_ENCODINGS: dict[str, Encoding] = {}


def get_encoding(encoding_name: str = "gpt2") -> Encoding:
    """GPT-2's tokenizer, like ``tiktoken.get_encoding("gpt2")``, from the package's own files.

    Built on first call from ``encoder.json`` + ``vocab.bpe`` (about 0.1 s) and kept for later
    calls, with its cache of merged pieces.

    Args:
        encoding_name: ``"gpt2"`` (also accepted: ``"r50k_base"``, tiktoken's other name for it).

    Returns:
        the :class:`Encoding`: ``n_vocab`` 50257, ``eot_token`` 50256.

    Raises:
        ValueError: for any other name.
    """
    if encoding_name not in ("gpt2", "r50k_base"):
        raise ValueError(f"unknown encoding {encoding_name!r}: minigpt ships only 'gpt2'")
    if "gpt2" not in _ENCODINGS:
        ranks = load_gpt2_vocabulary(VOCAB_DIR / "encoder.json", VOCAB_DIR / "vocab.bpe")
        _ENCODINGS["gpt2"] = Encoding(
            "gpt2",
            pat_str=GPT2_SPLIT_PATTERN,
            mergeable_ranks=ranks,
            special_tokens={ENDOFTEXT: len(ranks)},
        )
    return _ENCODINGS["gpt2"]
