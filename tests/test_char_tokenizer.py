"""Tests of minigpt.char_tokenizer.CharTokenizer: alphabet, round trips, errors, use with the data path."""

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigpt.char_tokenizer
from minigpt.char_tokenizer import CharTokenizer
from minigpt.cli import bundled_corpus_path
from minigpt.data import create_dataloader
from minigpt.generate import text_to_token_ids, token_ids_to_text


def test_alphabet_is_sorted_and_deduplicated():
    tokenizer = CharTokenizer.from_text("hello world")
    assert tokenizer.characters == " dehlorw"
    assert tokenizer.n_vocab == 8
    assert tokenizer.name == "char"
    assert tokenizer.encode("hello") == [3, 2, 4, 4, 5]
    assert tokenizer.decode([3, 2, 4, 4, 5]) == "hello"


def test_the_same_alphabet_gives_the_same_ids():
    # A checkpoint stores `characters`; CharTokenizer(characters) must rebuild the same mapping.
    original = CharTokenizer.from_text("the quick brown fox\n")
    rebuilt = CharTokenizer(original.characters)
    assert rebuilt.characters == original.characters
    assert rebuilt.encode("quick fox\n") == original.encode("quick fox\n")


def test_tinyshakespeare_has_65_characters():
    with open(bundled_corpus_path("tinyshakespeare.txt"), encoding="utf-8") as file:
        text = file.read()
    tokenizer = CharTokenizer.from_text(text)
    assert tokenizer.n_vocab == 65  # as nanoGPT's shakespeare_char
    assert tokenizer.decode(tokenizer.encode(text[:2000])) == text[:2000]


@settings(max_examples=50)
@given(st.text(min_size=1, max_size=40))
def test_round_trip_of_any_text(text):
    tokenizer = CharTokenizer.from_text(text)
    ids = tokenizer.encode(text)
    assert len(ids) == len(text)
    assert all(0 <= i < tokenizer.n_vocab for i in ids)
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(np.asarray(ids, dtype=np.int64)) == text


def test_allowed_special_is_accepted_and_empty_text_works():
    tokenizer = CharTokenizer.from_text("abc")
    assert tokenizer.encode("cab", allowed_special={"<|endoftext|>"}) == [2, 0, 1]
    assert tokenizer.encode("") == []
    assert tokenizer.decode([]) == ""


def test_unknown_character_is_named():
    tokenizer = CharTokenizer.from_text("abc")
    with pytest.raises(KeyError, match="'z'.*3 characters"):
        tokenizer.encode("abz")


@pytest.mark.parametrize("ids, error, match", [
    ([3], ValueError, "id 3 is outside.*0, 3"),
    ([-1], ValueError, "id -1 is outside"),
    ([1.5], TypeError, "integers"),
    ([1.0], TypeError, "integers"),
    ([True], TypeError, "integers"),
    (["a"], TypeError, "integers"),
])
def test_bad_ids_are_rejected_not_truncated(ids, error, match):
    with pytest.raises(error, match=match):
        CharTokenizer.from_text("abc").decode(ids)


@pytest.mark.parametrize("characters, error", [("", ValueError), (None, ValueError), (["a", "b"], ValueError)])
def test_bad_alphabets(characters, error):
    with pytest.raises(error, match="characters"):
        CharTokenizer(characters)


def test_from_text_needs_a_str():
    with pytest.raises(TypeError, match="text must be a str"):
        CharTokenizer.from_text(b"bytes")
    with pytest.raises(TypeError, match="text must be a str"):
        CharTokenizer.from_text("ab").encode(b"ab")


def test_works_with_the_data_loader_and_generation_helpers():
    text = "to be or not to be, that is the question\n" * 4
    tokenizer = CharTokenizer.from_text(text)
    loader = create_dataloader(text, batch_size=2, max_length=8, stride=8, shuffle=False, tokenizer=tokenizer)
    inputs, targets = next(iter(loader))
    assert tokenizer.decode(inputs[0]) == text[:8]
    assert tokenizer.decode(targets[0]) == text[1:9]
    ids = text_to_token_ids("to be", tokenizer)
    assert token_ids_to_text(ids, tokenizer) == "to be"


def test_docstring_example():
    result = doctest.testmod(minigpt.char_tokenizer, verbose=False)
    assert result.attempted > 0 and result.failed == 0
