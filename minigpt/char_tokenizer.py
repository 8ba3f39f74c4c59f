"""A character-level tokenizer: one token per distinct character of a training text.

The smallest possible vocabulary (65 characters for tinyshakespeare.txt): what nanoGPT's
Shakespeare-char example uses, and a useful contrast to the GPT-2 BPE of book chapter 2.
It has the same `encode` / `decode` surface as the other tokenizers, so the data loader, the
trainer and `generate` take it unchanged.
"""

from __future__ import annotations

import numpy as np


class CharTokenizer:
    """Maps each character of a fixed alphabet to an id, in sorted order.

    Args:
        characters: the alphabet, e.g. `CharTokenizer.from_text(text).characters`; sorted and
            deduplicated here.

    Attributes:
        name: "char" (as stored in checkpoints).
        n_vocab: the number of characters.
        characters: the alphabet as one string, id i is `characters[i]`.

    Example:
        >>> tokenizer = CharTokenizer.from_text("hello")
        >>> tokenizer.characters
        'ehlo'
        >>> tokenizer.encode("hell"), tokenizer.decode([1, 0])
        ([1, 0, 2, 2], 'he')
    """

    name = "char"

    def __init__(self, characters: str):
        if not isinstance(characters, str) or not characters:
            raise ValueError(f"characters must be a non-empty str, got {characters!r}")
        self.characters = "".join(sorted(set(characters)))
        self.n_vocab = len(self.characters)
        self._id_of = {character: i for i, character in enumerate(self.characters)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """The tokenizer whose alphabet is every distinct character of `text`."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return cls(text)

    def encode(self, text: str, allowed_special=None) -> list[int]:
        """Ids of the characters of `text` (`allowed_special` is accepted and ignored).

        Raises:
            TypeError: text is not a str. KeyError: a character outside the alphabet (named).
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        try:
            return [self._id_of[character] for character in text]
        except KeyError as error:
            raise KeyError(f"character {error.args[0]!r} is not in this tokenizer's alphabet of {self.n_vocab} characters") from None

    def decode(self, ids) -> str:
        """The text of a sequence of ids (a list, or a 1-D integer array).

        Raises:
            TypeError: an id that is not an integer (a float such as 1.5 is not truncated).
            ValueError: an id outside [0, n_vocab) (named).
        """
        checked = []
        for i in ids:
            if isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)):
                raise TypeError(f"ids must be integers, got {i!r} of type {type(i).__name__}")
            if not 0 <= i < self.n_vocab:
                raise ValueError(f"id {int(i)} is outside this tokenizer's vocabulary [0, {self.n_vocab})")
            checked.append(int(i))
        return "".join(self.characters[i] for i in checked)
