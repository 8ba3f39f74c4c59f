"""The book's first tokenizers: a word-level vocabulary, ``SimpleTokenizerV1`` and ``V2``.

Book chapter 2, sections 2.2-2.4. Text is cut into words and punctuation by a regular
expression; the vocabulary is the sorted set of those pieces, numbered from 0; a piece's id is
its place in that list. ``SimpleTokenizerV1`` cannot encode a word it has not seen (KeyError);
``SimpleTokenizerV2`` maps such words to ``<|unk|>`` and has ``<|endoftext|>`` to separate
documents. Chapter 2 then moves on to byte pair encoding, which never meets an unknown word:
``minigpt.tokenizer`` (GPT-2's vocabulary) and ``minigpt.bpe`` (train your own).

Example (the book's, on the-verdict.txt: 1,130 distinct pieces)::

    vocab = build_vocab(raw_text)                     # {"!": 0, '"': 1, "'": 2, ...}
    tokenizer = SimpleTokenizerV1(vocab)
    tokenizer.decode(tokenizer.encode('"It\\'s the last he painted, you know,"'))
    # '" It\\' s the last he painted, you know,"'   (spacing is not kept exactly)

References:
    Raschka, "Build a Large Language Model (From Scratch)", listings 2.3 and 2.4.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["split_text", "build_vocab", "SimpleTokenizerV1", "SimpleTokenizerV2", "UNKNOWN", "ENDOFTEXT"]

UNKNOWN = "<|unk|>"
ENDOFTEXT = "<|endoftext|>"

# The book's split: punctuation marks, the double dash "--" and whitespace are separators, and
# the capturing group keeps the punctuation as pieces of their own.
_SPLIT_PATTERN = re.compile(r'([,.:;?_!"()\']|--|\s)')
# Decoding joins pieces with spaces; this removes the space that join puts before punctuation.
_SPACE_BEFORE_PUNCTUATION = re.compile(r'\s+([,.:;?!"()\'])')


def split_text(text: str) -> list[str]:
    """Cut text into words and punctuation, dropping whitespace (the book's preprocessing).

    Example:
        >>> split_text("Hello, world. Is this-- a test?")
        ['Hello', ',', 'world', '.', 'Is', 'this', '--', 'a', 'test', '?']

    Raises:
        TypeError: if ``text`` is not a str.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return [item.strip() for item in _SPLIT_PATTERN.split(text) if item.strip()]


def build_vocab(text: str, special_tokens: Iterable[str] = ()) -> dict[str, int]:
    """The book's vocabulary: every distinct piece of ``text``, sorted, numbered from 0.

    Args:
        text: the training text.
        special_tokens: appended after the sorted pieces, in order; the book's V2 uses
            ``[ENDOFTEXT, UNKNOWN]``.

    Returns:
        dict from piece to id.
    """
    all_tokens = sorted(set(split_text(text)))
    all_tokens += [token for token in special_tokens if token not in all_tokens]
    return {token: integer for integer, token in enumerate(all_tokens)}


class SimpleTokenizerV1:
    """Word-level tokenizer over a fixed vocabulary (book listing 2.3).

    Args:
        vocab: dict from piece (str) to id (int), e.g. from :func:`build_vocab`.
    """

    def __init__(self, vocab: dict[str, int]):
        self.str_to_int = dict(vocab)
        self.int_to_str = {integer: string for string, integer in self.str_to_int.items()}

    def encode(self, text: str) -> list[int]:
        """Ids of the pieces of ``text``.

        Raises:
            TypeError: if ``text`` is not a str.
            KeyError: for a piece that is not in the vocabulary; the message names it.
        """
        ids = []
        for piece in split_text(text):
            if piece not in self.str_to_int:
                raise KeyError(f"{piece!r} is not in the vocabulary (SimpleTokenizerV2 maps it to {UNKNOWN!r})")
            ids.append(self.str_to_int[piece])
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        """Pieces joined by spaces, with no space before punctuation.

        Raises:
            KeyError: for an id that is not in the vocabulary; the message names it.
        """
        pieces = []
        for integer in ids:
            if integer not in self.int_to_str:
                raise KeyError(f"token id {integer!r} is not in the vocabulary of {len(self.int_to_str)} tokens")
            pieces.append(self.int_to_str[integer])
        return _SPACE_BEFORE_PUNCTUATION.sub(r"\1", " ".join(pieces))


class SimpleTokenizerV2(SimpleTokenizerV1):
    """``SimpleTokenizerV1`` that encodes unknown pieces as ``<|unk|>`` (book listing 2.4).

    Args:
        vocab: dict from piece to id; must contain ``<|unk|>`` (the book's vocabulary for V2 is
            ``build_vocab(text, [ENDOFTEXT, UNKNOWN])``, which also has ``<|endoftext|>``).

    Raises:
        ValueError: if ``vocab`` has no ``<|unk|>``.
    """

    def __init__(self, vocab: dict[str, int]):
        if UNKNOWN not in vocab:
            raise ValueError(f"SimpleTokenizerV2 needs {UNKNOWN!r} in its vocabulary")
        super().__init__(vocab)

    def encode(self, text: str) -> list[int]:
        """Ids of the pieces of ``text``; pieces not in the vocabulary get ``<|unk|>``'s id.

        ``<|endoftext|>`` is found only as a piece of its own: the split regex has no rule for
        it, so ``"end<|endoftext|>The"`` is one unknown piece. That is why the book joins
        documents as ``" <|endoftext|> ".join(texts)``, with spaces around the token.

        Raises:
            TypeError: if ``text`` is not a str.
        """
        unknown_id = self.str_to_int[UNKNOWN]
        return [self.str_to_int.get(piece, unknown_id) for piece in split_text(text)]
