"""Llama 3's tokenizer and chat format: ``Llama3Tokenizer(model_path)``, ``ChatFormat``.

The book's Llama 3.2 code (``ch05/07_gpt_to_llama/standalone-llama32.ipynb`` and
``pkg/llms_from_scratch/llama3.py``) wraps tiktoken around Meta's ``tokenizer.model``; this module
is the same wrapper around minigpt's own tiktoken-compatible ``minigpt.tokenizer.Encoding``, so
the book's cells run with only the imports changed. What differs from GPT-2's tokenizer is data,
not algorithm: Llama 3 is byte-level BPE merged by rank, exactly as GPT-2, with

1. **its vocabulary file**: ``tokenizer.model`` is a tiktoken rank file, one
   ``<base64 of the token's bytes> <rank>`` line per token, 128,000 of them (read by
   ``minigpt.tokenizer.load_tiktoken_ranks``);
2. **its split pattern**: GPT-4's (cl100k) rules: contractions in any case, letters with at most
   one leading non-letter (``"(hello"``), numbers in groups of at most three digits, and
   newlines kept apart from other whitespace;
3. **its special tokens**, which take the ids after the base ranks: ``<|begin_of_text|>``
   (128000), ``<|end_of_text|>`` (128001), ``<|start_header_id|>`` (128006),
   ``<|end_header_id|>`` (128007), ``<|eot_id|>`` (128009), and reserved ones
   ``<|reserved_{i}|>`` at id ``128002 + i`` wherever that id is free, as the book sets them.

NOTE: the book's reserved tokens are its own naming (Meta's are ``<|reserved_special_token_N|>``),
and two of them, ``<|reserved_254|>`` and ``<|reserved_255|>``, get ids 128256 and 128257, past the
model's 128,256 embedding rows; they are kept here so that ids match the book's tokenizer one to
one. The five named tokens, the ones that matter, carry Meta's ids.

The specials' ids are absolute (128000 + offset), as in the book and Meta's files, whatever the
size of the rank file: a smaller file (the tests' generated one) leaves the ids between its last
rank and 128000 unused, and decoding one of them raises ValueError. A file with more than 128,000
ranks would collide with the specials and is refused.

References:
    Meta, llama-models ``models/llama3/tokenizer.py`` (the pattern, the special tokens and the
    chat format ``<|start_header_id|>role<|end_header_id|>\\n\\n ... <|eot_id|>``); Raschka,
    ``pkg/llms_from_scratch/llama3.py`` (``Llama3Tokenizer``, ``ChatFormat``, ``clean_text``);
    tiktoken's ``load_tiktoken_bpe`` and ``Encoding`` (the file format and the API).
"""

from __future__ import annotations

import os
from pathlib import Path

from minigpt.tokenizer import Encoding, load_tiktoken_ranks

__all__ = ["LLAMA3_SPLIT_PATTERN", "LLAMA3_SPECIAL_OFFSETS", "NUM_BASE_TOKENS", "Llama3Tokenizer", "ChatFormat", "clean_text"]

# Llama 3's pre-tokenization pattern (Meta's tokenizer.py; the book's llama3.py), piece by piece:
#   (?i:'s|'t|'re|'ve|'m|'ll|'d)   English contractions, any case: "'S", "'ll"
#   [^\r\n\p{L}\p{N}]?\p{L}+       letters with at most one leading non-letter: " hello", "(x"
#   \p{N}{1,3}                     numbers cut into groups of at most three digits: "123", "4"
#    ?[^\s\p{L}\p{N}]+[\r\n]*      punctuation runs with an optional leading space and trailing newlines
#   \s*[\r\n]+                     newlines, with the whitespace before them
#   \s+(?!\S)|\s+                  other whitespace, leaving the last space to the word after it
LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Special token -> its id minus the number of base ranks (Meta's ids, the book's table).
LLAMA3_SPECIAL_OFFSETS = {
    "<|begin_of_text|>": 0,
    "<|end_of_text|>": 1,
    "<|start_header_id|>": 6,
    "<|end_header_id|>": 7,
    "<|eot_id|>": 9,
}
_RESERVED_COUNT = 256  # the book's `range(256)` of <|reserved_i|> candidates


NUM_BASE_TOKENS = 128_000  # Meta's rank count: the first special id


def _special_tokens(num_base_tokens: int = NUM_BASE_TOKENS) -> dict[str, int]:
    """The named specials and the book's reserved ones (``<|reserved_i|>`` at base + 2 + i when free)."""
    special = {token: num_base_tokens + offset for token, offset in LLAMA3_SPECIAL_OFFSETS.items()}
    taken = set(special.values())
    for index in range(_RESERVED_COUNT):
        if num_base_tokens + 2 + index not in taken:
            special[f"<|reserved_{index}|>"] = num_base_tokens + 2 + index
    return special


class Llama3Tokenizer:
    """Llama 3's tokenizer from its tiktoken-format ``tokenizer.model`` (the book's class).

    Example (with Meta's file):
        >>> tokenizer = Llama3Tokenizer("Llama-3.2-1B/original/tokenizer.model")  # doctest: +SKIP
        >>> tokenizer.encode("Hello world", bos=True)                             # doctest: +SKIP
        [128000, 9906, 1917]

    Args:
        model_path: path to the rank file (``original/tokenizer.model`` of Meta's repositories).

    Attributes:
        special: dict special token text -> id (``<|begin_of_text|>`` 128000 ... as the book).
        model: the ``minigpt.tokenizer.Encoding`` doing the work (tiktoken's API: ``encode``,
            ``decode``, ``n_vocab``, ``encode_ordinary``...).

    Raises:
        FileNotFoundError: no file at ``model_path`` (as the book's class).
        ValueError: a malformed rank file (a line that is not ``<base64> <rank>``, a repeated
            token, a missing single byte).

    References: Raschka, ``pkg/llms_from_scratch/llama3.py``, ``Llama3Tokenizer``.
    """

    def __init__(self, model_path):
        if not os.path.isfile(model_path):
            raise FileNotFoundError(model_path)
        ranks = load_tiktoken_ranks(model_path)
        if len(ranks) > NUM_BASE_TOKENS or max(ranks.values()) >= NUM_BASE_TOKENS:
            raise ValueError(f"model_path {model_path}: {len(ranks)} ranks up to {max(ranks.values())}, but Llama 3's "
                             f"special tokens start at id {NUM_BASE_TOKENS}")
        self.special = _special_tokens()
        self.model = Encoding(Path(model_path).name, pat_str=LLAMA3_SPLIT_PATTERN,
                              mergeable_ranks=ranks, special_tokens=self.special)

    def encode(self, text: str, bos: bool = False, eos: bool = False, allowed_special=None,
               disallowed_special="all", **kwargs) -> list[int]:
        """Token ids of ``text``, with ``<|begin_of_text|>`` before (``bos``) and
        ``<|end_of_text|>`` after (``eos``).

        Special-token text inside ``text`` raises ValueError unless allowed, as tiktoken's
        ``encode`` (the book's class passes no ``allowed_special``; its ``ChatFormat`` passes
        ``allowed_special=None``, which means the same). Other keyword arguments are accepted and
        ignored, as the book's ``**kwargs``.

        Args:
            text: str.
            bos, eos: add the begin / end of text ids.
            allowed_special: None (none), ``"all"`` or a set of special token texts.
            disallowed_special: ``"all"`` or the special tokens whose text raises.

        Returns:
            list of int ids.

        Raises:
            TypeError: ``text`` is not a str. ValueError: disallowed special-token text.
        """
        allowed = frozenset() if allowed_special is None else allowed_special
        ids = [self.special["<|begin_of_text|>"]] if bos else []
        ids += self.model.encode(text, allowed_special=allowed, disallowed_special=disallowed_special)
        if eos:
            ids.append(self.special["<|end_of_text|>"])
        return ids

    def decode(self, ids) -> str:
        """Text of token ids (special tokens as their text; invalid UTF-8 as U+FFFD).

        Raises:
            ValueError: an id that is no token (out of range, or unused below 128000).
        """
        tokens = self.model.decode_tokens_bytes(ids)
        if None in tokens:
            unused = next(token_id for token_id, token in zip(ids, tokens) if token is None)
            raise ValueError(f"token id {unused} is not a token of {self.model.name} (no rank and no special token)")
        return b"".join(tokens).decode("utf-8", errors="replace")

    @property
    def n_vocab(self) -> int:
        """Number of ids: base ranks + the book's specials (128,258 for Meta's file)."""
        return self.model.n_vocab


class ChatFormat:
    """Llama 3's chat template: one system and one user turn, then the assistant's header.

    ``encode(user)`` gives::

        <|begin_of_text|><|start_header_id|>system<|end_header_id|>\\n\\n{system}<|eot_id|>
        <|start_header_id|>user<|end_header_id|>\\n\\n{user}<|eot_id|>
        <|start_header_id|>assistant<|end_header_id|>\\n\\n

    (no line breaks between the parts), so that the model writes the assistant's answer next and
    ends it with ``<|eot_id|>``.

    Args:
        tokenizer: a ``Llama3Tokenizer``.
        default_system: the system message used when ``encode`` gets none.

    References: Meta's ``ChatFormat`` (llama-models ``tokenizer.py``); Raschka,
    ``pkg/llms_from_scratch/llama3.py``, ``ChatFormat``.
    """

    def __init__(self, tokenizer: Llama3Tokenizer, *, default_system: str = "You are a helpful assistant."):
        self.tok = tokenizer
        self.default_system = default_system

    def _header(self, role: str) -> list[int]:
        """Ids of ``<|start_header_id|>{role}<|end_header_id|>\\n\\n``."""
        special = self.tok.special
        return ([special["<|start_header_id|>"]] + self.tok.encode(role) + [special["<|end_header_id|>"]]
                + self.tok.encode("\n\n"))

    def encode(self, user_message: str, system_message: str | None = None, allowed_special=None) -> list[int]:
        """Ids of the template above; ``allowed_special`` applies to the system message, as the book's.

        Raises:
            ValueError: special-token text in a message (not allowed).
        """
        system = system_message if system_message is not None else self.default_system
        eot = self.tok.special["<|eot_id|>"]
        ids = [self.tok.special["<|begin_of_text|>"]]
        ids += self._header("system") + self.tok.encode(system, allowed_special=allowed_special) + [eot]
        ids += self._header("user") + self.tok.encode(user_message) + [eot]
        return ids + self._header("assistant")

    def decode(self, ids) -> str:
        """Text of ids, special tokens included."""
        return self.tok.decode(ids)


def clean_text(text: str, header_end: str = "assistant<|end_header_id|>\n\n") -> str:
    """The part of a decoded chat after the assistant's header, stripped (the book's helper);
    the whole text when there is no such header."""
    index = text.find(header_end)
    return text[index + len(header_end):].strip() if index != -1 else text
