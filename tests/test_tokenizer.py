"""GPT-2 tokenizer (minigpt.tokenizer): exact ids against tiktoken's, round trips, bad input.

The golden ids in tests/fixtures/tokenizer/ were produced by tiktoken's GPT-2 encoding (see the
README there); the tests never need tiktoken itself.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.tokenizer import (
    ENDOFTEXT,
    GPT2_SPLIT_PATTERN,
    VOCAB_DIR,
    Encoding,
    bytes_to_unicode,
    get_encoding,
    load_gpt2_vocabulary,
    load_tiktoken_ranks,
)

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "tokenizer"
CORPORA = Path(__file__).parent.parent / "minigpt" / "corpora"  # the texts minigpt ships
CASES = [json.loads(line) for line in (GOLDEN / "gpt2_cases.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def enc():
    return get_encoding("gpt2")


# ----- exact against tiktoken -------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[repr(case["text"])[:40] for case in CASES])
def test_golden_cases_match_tiktoken(enc, case):
    assert enc.encode_ordinary(case["text"]) == case["ids_ordinary"]
    assert enc.encode(case["text"], allowed_special="all") == case["ids_allow_all"]
    assert enc.decode(case["ids_allow_all"]) == case["text"]


@pytest.mark.parametrize("name", ["the-verdict", "tinyshakespeare"])
def test_whole_corpus_matches_tiktoken(enc, name):
    text = (CORPORA / f"{name}.txt").read_text(encoding="utf-8")
    expected = np.load(GOLDEN / f"{name}.gpt2.npy").tolist()
    assert enc.encode(text) == expected
    assert enc.encode(text) == expected  # again, now from the cache of merged pieces
    assert enc.decode(expected) == text


def test_the_verdict_has_5145_tokens(enc):
    # Book section 2.6: "the-verdict.txt ... 5145 tokens in the training set after BPE".
    assert len(enc.encode((FIXTURES / "the-verdict.txt").read_text(encoding="utf-8"))) == 5145


def test_book_example(enc):
    # Book section 2.5, encoding with allowed_special={"<|endoftext|>"}.
    text = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of someunknownPlace."
    ids = enc.encode(text, allowed_special={"<|endoftext|>"})
    assert ids == [15496, 11, 466, 345, 588, 8887, 30, 220, 50256, 554, 262, 4252, 18250,
                   8812, 2114, 286, 617, 34680, 27271, 13]
    assert enc.decode(ids) == text


# ----- vocabulary files ---------------------------------------------------------------------------


def test_vocabulary_facts(enc):
    assert enc.n_vocab == 50257
    assert enc.eot_token == 50256
    assert enc.max_token_value == 50256
    assert enc.special_tokens_set == {ENDOFTEXT}
    assert enc.decode_single_token_bytes(50256) == b"<|endoftext|>"
    assert enc.decode_single_token_bytes(220) == b" "
    assert enc.encode_single_token(" the") == 262
    assert enc.encode_single_token(ENDOFTEXT) == 50256
    assert get_encoding("gpt2") is enc  # built once


def test_tiktoken_file_and_gpt2_files_agree():
    from_gpt2_files = load_gpt2_vocabulary(VOCAB_DIR / "encoder.json", VOCAB_DIR / "vocab.bpe")
    from_tiktoken_file = load_tiktoken_ranks(VOCAB_DIR / "gpt2.tiktoken")
    assert len(from_gpt2_files) == 50256
    assert from_gpt2_files == from_tiktoken_file


def test_encoding_built_from_tiktoken_file(enc):
    other = Encoding(
        "gpt2-from-tiktoken-file",
        pat_str=GPT2_SPLIT_PATTERN,
        mergeable_ranks=load_tiktoken_ranks(VOCAB_DIR / "gpt2.tiktoken"),
        special_tokens={ENDOFTEXT: 50256},
    )
    text = (FIXTURES / "the-verdict.txt").read_text(encoding="utf-8")
    assert other.encode(text) == enc.encode(text)


def test_inconsistent_vocabulary_files_are_rejected(tmp_path):
    encoder = json.loads((VOCAB_DIR / "encoder.json").read_text(encoding="utf-8"))
    encoder["Ġthe"], encoder["Ġa"] = encoder["Ġa"], encoder["Ġthe"]
    (tmp_path / "encoder.json").write_text(json.dumps(encoder), encoding="utf-8")
    with pytest.raises(ValueError, match="Ġ"):
        load_gpt2_vocabulary(tmp_path / "encoder.json", VOCAB_DIR / "vocab.bpe")


def test_bad_tiktoken_file_is_rejected(tmp_path):
    (tmp_path / "bad.tiktoken").write_text("IQ== 0\nnot-a-rank-line\n")
    with pytest.raises(ValueError, match="line 2"):
        load_tiktoken_ranks(tmp_path / "bad.tiktoken")


def test_bytes_to_unicode_is_a_printable_bijection():
    table = bytes_to_unicode()
    assert sorted(table) == list(range(256))
    assert len(set(table.values())) == 256
    assert all(character.isprintable() and not character.isspace() for character in table.values())
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("a")] == "a"


# ----- special tokens -----------------------------------------------------------------------------


def test_special_token_text_is_disallowed_by_default(enc):
    with pytest.raises(ValueError, match="disallowed special token '<|endoftext|>'"):
        enc.encode("a <|endoftext|> b")
    with pytest.raises(ValueError):
        enc.encode_batch(["fine", "<|endoftext|>"])


def test_special_token_allowed_or_encoded_as_text(enc):
    text = "a<|endoftext|>b<|endoftext|>"
    assert enc.encode(text, allowed_special={ENDOFTEXT}) == [64, 50256, 65, 50256]
    assert enc.encode(text, allowed_special="all") == [64, 50256, 65, 50256]
    as_text = enc.encode_ordinary(text)
    assert 50256 not in as_text
    assert enc.encode(text, disallowed_special=()) == as_text
    assert enc.decode(as_text) == text


def test_unknown_allowed_special_is_an_error(enc):
    with pytest.raises(ValueError, match="<|im_start|>"):
        enc.encode("x", allowed_special={"<|im_start|>"})


def test_encode_batch(enc):
    texts = ["Hello world", "", " tea?\n\n"]
    assert enc.encode_batch(texts) == [enc.encode(text) for text in texts]
    assert enc.encode_ordinary_batch(texts) == [enc.encode_ordinary(text) for text in texts]
    with pytest.raises(TypeError):
        enc.encode_batch("not a list")


# ----- round trips --------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_decode_encode_round_trip(text):
    enc = get_encoding("gpt2")
    ids = enc.encode_ordinary(text)
    assert enc.decode(ids) == text
    assert enc.decode_bytes(ids) == text.encode("utf-8")
    assert all(0 <= token_id < 50256 for token_id in ids)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=20), st.just(ENDOFTEXT)), max_size=6))
def test_round_trip_with_special_tokens(parts):
    enc = get_encoding("gpt2")
    text = "".join(parts)
    ids = enc.encode(text, allowed_special="all")
    assert enc.decode(ids) == text
    assert ids.count(enc.eot_token) == text.count(ENDOFTEXT)


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1), st.data())
def test_decoding_any_prefix_never_raises(text, data):
    enc = get_encoding("gpt2")
    ids = enc.encode_ordinary(text)
    cut = data.draw(st.integers(0, len(ids)))
    decoded = enc.decode(ids[:cut])
    assert decoded == enc.decode_bytes(ids[:cut]).decode("utf-8", errors="replace")


def test_split_multibyte_character_decodes_to_replacement_character(enc):
    ids = enc.encode("😀")  # 4 UTF-8 bytes, more than one token
    assert len(ids) > 1
    assert enc.decode(ids[:1]).startswith("\ufffd")
    assert enc.decode(ids) == "😀"
    with pytest.raises(UnicodeDecodeError):
        enc.decode(ids[:1], errors="strict")


def test_decode_accepts_numpy_arrays(enc):
    ids = enc.encode("Hello, world")
    assert enc.decode(np.array(ids, dtype=np.uint16)) == "Hello, world"
    assert enc.decode([np.int64(token_id) for token_id in ids]) == "Hello, world"


def test_pre_split_keeps_last_space_for_next_word():
    # "\s+(?!\S)" leaves the last space of a run to the word after it: "   x" -> "  ", " x".
    assert regex.findall(GPT2_SPLIT_PATTERN, "a   x") == ["a", "  ", " x"]
    assert regex.findall(GPT2_SPLIT_PATTERN, "I'll pay $100!!") == ["I", "'ll", " pay", " $", "100", "!!"]


# ----- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [b"bytes", None, 3, ["a list"]])
def test_encode_rejects_non_str(enc, bad):
    with pytest.raises(TypeError, match="str"):
        enc.encode(bad)
    with pytest.raises(TypeError, match="str"):
        enc.encode_ordinary(bad)


@pytest.mark.parametrize("bad_id", [-1, 50257, 10**9])
def test_decode_rejects_out_of_range_ids(enc, bad_id):
    with pytest.raises(ValueError, match=rf"token id {bad_id} "):
        enc.decode([15496, bad_id])
    with pytest.raises(ValueError, match=rf"token id {bad_id} "):
        enc.decode(np.array([15496, bad_id]))
    with pytest.raises(ValueError, match=rf"{bad_id}"):
        enc.decode_single_token_bytes(bad_id)


@pytest.mark.parametrize("bad", [[1.5], [True], ["7"], "text", np.array([1.0])])
def test_decode_rejects_non_integer_ids(enc, bad):
    with pytest.raises(TypeError):
        enc.decode(bad)


def test_unknown_encoding_name():
    with pytest.raises(ValueError, match="cl100k_base"):
        get_encoding("cl100k_base")


def test_lone_surrogates_encode_as_the_replacement_character_as_tiktoken():
    encoding = get_encoding("gpt2")
    assert encoding.encode("a\udcffb") == encoding.encode("a\ufffdb")
    assert encoding.encode_ordinary("\ud83d") == encoding.encode_ordinary("\ufffd")
