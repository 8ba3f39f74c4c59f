"""The book's word-level tokenizers (minigpt.simple_tokenizer), checked against the book's outputs."""

from pathlib import Path

import pytest

from minigpt.simple_tokenizer import (
    ENDOFTEXT,
    UNKNOWN,
    SimpleTokenizerV1,
    SimpleTokenizerV2,
    build_vocab,
    split_text,
)

THE_VERDICT = (Path(__file__).parent / "fixtures" / "the-verdict.txt").read_text(encoding="utf-8")


def test_split_text():
    assert split_text("Hello, world. Is this-- a test?") == [
        "Hello", ",", "world", ".", "Is", "this", "--", "a", "test", "?"
    ]
    assert len(split_text(THE_VERDICT)) == 4690  # book section 2.2


def test_build_vocab_as_in_the_book():
    vocab = build_vocab(THE_VERDICT)
    assert len(vocab) == 1130  # book section 2.3
    assert list(vocab.items())[:3] == [("!", 0), ('"', 1), ("'", 2)]
    vocab_v2 = build_vocab(THE_VERDICT, [ENDOFTEXT, UNKNOWN])
    assert len(vocab_v2) == 1132  # book section 2.4
    assert list(vocab_v2.items())[-2:] == [(ENDOFTEXT, 1130), (UNKNOWN, 1131)]


def test_v1_matches_the_book():
    tokenizer = SimpleTokenizerV1(build_vocab(THE_VERDICT))
    text = """"It's the last he painted, you know," Mrs. Gisburn said with pardonable pride."""
    ids = tokenizer.encode(text)
    assert ids == [1, 56, 2, 850, 988, 602, 533, 746, 5, 1126, 596, 5, 1, 67, 7, 38, 851, 1108, 754, 793, 7]
    assert tokenizer.decode(ids) == """" It' s the last he painted, you know," Mrs. Gisburn said with pardonable pride."""


def test_v1_unknown_word_raises_key_error_naming_it():
    tokenizer = SimpleTokenizerV1(build_vocab(THE_VERDICT))
    with pytest.raises(KeyError, match="'Hello'"):
        tokenizer.encode("Hello, do you like tea?")
    with pytest.raises(KeyError, match="5000"):
        tokenizer.decode([5000])
    with pytest.raises(TypeError):
        tokenizer.encode(None)


def test_v2_matches_the_book():
    tokenizer = SimpleTokenizerV2(build_vocab(THE_VERDICT, [ENDOFTEXT, UNKNOWN]))
    text = " <|endoftext|> ".join(("Hello, do you like tea?", "In the sunlit terraces of the palace."))
    ids = tokenizer.encode(text)
    assert ids == [1131, 5, 355, 1126, 628, 975, 10, 1130, 55, 988, 956, 984, 722, 988, 1131, 7]
    assert tokenizer.decode(ids) == "<|unk|>, do you like tea? <|endoftext|> In the sunlit terraces of the <|unk|>."


def test_v2_needs_unknown_token():
    with pytest.raises(ValueError, match="unk"):
        SimpleTokenizerV2(build_vocab(THE_VERDICT))


def test_round_trip_on_known_words():
    tokenizer = SimpleTokenizerV1(build_vocab(THE_VERDICT))
    ids = tokenizer.encode(THE_VERDICT)
    assert tokenizer.encode(tokenizer.decode(ids)) == ids
