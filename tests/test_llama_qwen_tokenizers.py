"""Llama 3's and Qwen3's tokenizers against the reference libraries and the book's classes.

The fixtures (tests/fixtures/llama_qwen_tokenizers/, made once by
scripts/make_tokenizer_fixtures.py) are a small byte-level BPE trained with Hugging Face
`tokenizers`, written in the real formats (Qwen3- and Llama-3-style tokenizer.json, a tiktoken
rank file), and the ids that `tokenizers` 0.23, tiktoken 0.14 and the book's
`Llama3Tokenizer` / `ChatFormat` / `Qwen3Tokenizer` give for held-back strings.
"""

import json
from pathlib import Path

import pytest

from minigpt.hf_tokenizer import HFTokenizer
from minigpt.llama3_tokenizer import ChatFormat, Llama3Tokenizer, clean_text
from minigpt.qwen3_tokenizer import Qwen3Tokenizer

FIXTURES = Path(__file__).parent / "fixtures" / "llama_qwen_tokenizers"
CASES = json.loads((FIXTURES / "cases.json").read_text(encoding="utf-8"))
STRINGS = CASES["strings"]
JSON_FILES = sorted(CASES["tokenizer_json"])


def _check_all(ours, expected, what):
    wrong = [(text, got, want) for text, got, want in zip(STRINGS, ours, expected) if got != want]
    assert not wrong, f"{what}: {len(wrong)} strings differ, first: {wrong[0]}"


@pytest.fixture(scope="module")
def llama():
    return Llama3Tokenizer(FIXTURES / "llama3-style.tiktoken")


@pytest.mark.parametrize("name", JSON_FILES)
def test_tokenizer_json_encode_equals_hf_tokenizers(name):
    tokenizer = HFTokenizer.from_file(FIXTURES / f"{name}.tokenizer.json")
    expected = CASES["tokenizer_json"][name]
    _check_all([tokenizer.encode(text).ids for text in STRINGS], expected["ids"], name)
    # Without the post-processor's tokens (Llama 3's <|begin_of_text|>); and the cache agrees.
    _check_all([tokenizer.encode(text, add_special_tokens=False).ids for text in STRINGS],
               expected["ids_without_special"], name + " add_special_tokens=False")
    _check_all([tokenizer.encode_ids(text) for text in STRINGS], expected["ids_without_special"], name + " (cached)")
    assert tokenizer.get_vocab_size() == expected["vocab_size"]


@pytest.mark.parametrize("name", JSON_FILES)
def test_tokenizer_json_decode_equals_hf_tokenizers(name):
    tokenizer = HFTokenizer.from_file(FIXTURES / f"{name}.tokenizer.json")
    expected = CASES["tokenizer_json"][name]
    assert [tokenizer.decode(ids) for ids in expected["decode_ids"]] == expected["decoded"]
    skipped = [tokenizer.decode(ids, skip_special_tokens=True) for ids in expected["ids"]]
    _check_all(skipped, expected["decoded_skip_special"], name + " skip_special_tokens")


def test_llama_style_file_puts_begin_of_text_first():
    tokenizer = HFTokenizer.from_file(FIXTURES / "llama3-style.tokenizer.json")
    bos = tokenizer.token_to_id("<|begin_of_text|>")
    assert tokenizer.encode("Hi").ids[0] == bos and tokenizer.encode("Hi", add_special_tokens=False).ids[0] != bos
    assert tokenizer.encode("Hi").tokens[0] == "<|begin_of_text|>"


def test_shuffled_merges_rank_by_merge_not_by_id():
    # The shuffled file's merge order disagrees with its token ids, so ranking by id would fail here.
    shuffled = HFTokenizer.from_file(FIXTURES / "shuffled-merges.tokenizer.json")
    plain = HFTokenizer.from_file(FIXTURES / "qwen3-style.tokenizer.json")
    assert shuffled.encode("The Verdict").ids != plain.encode("The Verdict").ids
    # Its odd added tokens decode by the ByteLevel decoder's rule, as the library: "ĠQ" -> " Q".
    assert shuffled.decode(shuffled.encode("ĠQ").ids) == " Q" and shuffled.decode(shuffled.encode("x y").ids) == "x y"
    with pytest.raises(ValueError, match="out of range"):
        shuffled.decode([shuffled.n_vocab])


def test_llama3_ordinary_and_specials_equal_tiktoken(llama):
    _check_all([llama.model.encode_ordinary(text) for text in STRINGS], CASES["tiktoken"]["ordinary"], "ordinary")
    _check_all([llama.encode(text, allowed_special="all") for text in STRINGS], CASES["tiktoken"]["allow_all"], "all")
    assert llama.special == CASES["tiktoken"]["special"]


def test_llama3_bos_eos_and_chat_equal_the_book(llama):
    for text, expected in zip(STRINGS, CASES["tiktoken"]["bos_eos"]):
        if expected is None:  # special-token text: the book's tokenizer raises, and so does ours
            with pytest.raises(ValueError, match="disallowed special token"):
                llama.encode(text, bos=True, eos=True)
        else:
            assert llama.encode(text, bos=True, eos=True) == expected, text
    chat = ChatFormat(llama)
    for message, expected in zip(CASES["chat_messages"], CASES["tiktoken"]["chat"]):
        if expected is not None:
            assert chat.encode(message) == expected
    assert chat.encode("Hi", system_message="Be brief.") == CASES["tiktoken"]["chat_system"]
    text = chat.decode(chat.encode("What is 1+1?") + llama.encode("Two."))
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful")
    assert clean_text(text) == "Two."


def test_llama3_round_trip_and_errors(llama, tmp_path):
    for text in STRINGS:
        if "\ud800" not in text:
            assert llama.decode(llama.encode(text, allowed_special="all")) == text
    with pytest.raises(ValueError, match="token id 5000 is not a token"):
        llama.decode([5000])  # between the 1,500 ranks and the specials at 128000
    with pytest.raises(FileNotFoundError):
        Llama3Tokenizer(tmp_path / "missing.model")
    bad = tmp_path / "bad.model"
    bad.write_text("not-a-rank-line\n")
    with pytest.raises(ValueError, match="expected '<base64> <rank>'"):
        Llama3Tokenizer(bad)


@pytest.mark.parametrize("options", [key for key in CASES["book_qwen3"] if key.startswith("{")])
def test_qwen3_tokenizer_equals_the_book(options):
    tokenizer = Qwen3Tokenizer(FIXTURES / "qwen3-style.tokenizer.json", **json.loads(options))
    expected = CASES["book_qwen3"][options]
    texts = STRINGS + CASES["chat_messages"]
    wrong = [text for text, ids in zip(texts, expected["encode"]) if tokenizer.encode(text) != ids]
    assert not wrong, f"{len(wrong)} differ, first {wrong[0]!r}"
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (expected["eos_token_id"], expected["pad_token_id"])
    if options == "{}":
        assert [tokenizer.decode(ids) for ids in expected["encode"]] == CASES["book_qwen3"]["decode"]


def test_qwen3_chat_template_and_eos():
    path = FIXTURES / "qwen3-style.tokenizer.json"
    chat = Qwen3Tokenizer(path, repo_id="Qwen/Qwen3-0.6B", add_generation_prompt=True)  # file exists: no download
    assert chat.eos_token_id == CASES["book_qwen3"]["repo_id"]["eos_token_id"] == chat._special_to_id["<|im_end|>"]
    assert chat.decode(chat.encode("Hi")) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert Qwen3Tokenizer(path, repo_id="Qwen/Qwen3-0.6B-Base").eos_token_id == chat.pad_token_id
    with pytest.raises(FileNotFoundError, match="tokenizer_file_path"):
        Qwen3Tokenizer(FIXTURES / "missing.json")


def test_unsupported_tokenizer_json_is_refused(tmp_path):
    document = json.loads((FIXTURES / "qwen3-style.tokenizer.json").read_text(encoding="utf-8"))
    document["normalizer"] = {"type": "Lowercase"}
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ValueError, match="normalizer"):
        HFTokenizer.from_file(path)
    document["normalizer"], document["model"]["type"] = None, "WordPiece"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ValueError, match="model.type"):
        HFTokenizer.from_file(path)
