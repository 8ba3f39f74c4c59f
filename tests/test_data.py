"""Tests of minigpt.data: sliding windows, batching and resuming, splits, token files, errors.

Most tests use ids directly or `RegexTokenizer`, a stand-in with GPT-2's pre-tokenization regex
(one id per pre-token), so they do not depend on the real BPE tokenizer; the few that use
`minigpt.tokenizer` are skipped when it cannot be imported.
"""

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.data import (
    DataLoader,
    GPTDataset,
    create_dataloader,
    load_tokens,
    prepare,
    token_file_info,
    train_val_split,
)

FIXTURES = Path(__file__).parent / "fixtures"

# GPT-2's pre-tokenization pattern (Radford et al. 2019, openai/gpt-2 encoder.py).
GPT2_PATTERN = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


class RegexTokenizer:
    """A stand-in tokenizer: one id per GPT-2 pre-token (a CRC of its bytes), "<|endoftext|>" -> 50256.

    Splitting a text where a real BPE tokenizer would give different ids also gives different
    pre-tokens here, so it tests `prepare`'s chunk cuts without the real vocabulary.
    """

    name = "regex-test"
    n_vocab = 50257

    def encode(self, text, allowed_special=frozenset()):
        ids = []
        pieces = text.split("<|endoftext|>") if "<|endoftext|>" in allowed_special else [text]
        for number, piece in enumerate(pieces):
            if number:
                ids.append(50256)
            ids += [zlib.crc32(token.encode("utf-8")) % 50256 for token in GPT2_PATTERN.findall(piece)]
        return ids


class CharTokenizer:
    """A character-level tokenizer whose encode takes no allowed_special."""

    def encode(self, text):
        return [ord(character) for character in text]


def real_gpt2_tokenizer():
    try:
        from minigpt.tokenizer import get_encoding

        return get_encoding("gpt2")
    except Exception as error:  # the tokenizer is developed separately; skip rather than fail here
        pytest.skip(f"minigpt.tokenizer unavailable: {error!r}")


def book_windows(token_ids, max_length, stride):
    """The book's GPTDatasetV1 loop (listing 2.5), transcribed: lists of input and target windows."""
    inputs, targets = [], []
    for i in range(0, len(token_ids) - max_length, stride):
        inputs.append(list(token_ids[i:i + max_length]))
        targets.append(list(token_ids[i + 1:i + max_length + 1]))
    return inputs, targets


# ------------------------------------------------------------------------------------------------
# GPTDataset
# ------------------------------------------------------------------------------------------------


def test_windows_and_targets_shift_by_one():
    dataset = GPTDataset(np.arange(20), None, max_length=4, stride=2)
    assert len(dataset) == 8  # starts 0, 2, ..., 14: ceil((20 - 4) / 2)
    inputs, targets = dataset[3]
    np.testing.assert_array_equal(inputs, [6, 7, 8, 9])
    np.testing.assert_array_equal(targets, [7, 8, 9, 10])
    assert inputs.dtype == np.int64 and targets.dtype == np.int64 and inputs.shape == (4,)
    np.testing.assert_array_equal(dataset[-1][1], [15, 16, 17, 18])
    with pytest.raises(IndexError, match="expected -8 <= index < 8, received 8"):
        dataset[8]


@settings(max_examples=40, deadline=None)
@given(count=st.integers(2, 60), max_length=st.integers(1, 12), stride=st.integers(1, 12))
def test_windows_equal_the_book_loop(count, max_length, stride):
    token_ids = np.random.default_rng(count).integers(0, 50257, size=count)
    if count < max_length + 1:
        with pytest.raises(ValueError, match=f"{max_length + 1 - count} tokens short"):
            GPTDataset(token_ids, None, max_length, stride)
        return
    dataset = GPTDataset(token_ids, None, max_length, stride)
    inputs, targets = book_windows(token_ids, max_length, stride)
    assert len(dataset) == len(inputs)
    for index in range(len(dataset)):
        assert dataset[index][0].tolist() == inputs[index]
        assert dataset[index][1].tolist() == targets[index]
    batch_inputs, batch_targets = dataset.get_batch(np.arange(len(dataset))[::-1])
    assert batch_inputs.tolist() == inputs[::-1] and batch_targets.tolist() == targets[::-1]


def test_text_is_tokenized_with_allowed_special():
    tokenizer = RegexTokenizer()
    text = "Hello, world. Is this-- a test?<|endoftext|> In the sunlit terraces"
    dataset = GPTDataset(text, tokenizer, max_length=4, stride=1)
    expected = tokenizer.encode(text, allowed_special={"<|endoftext|>"})
    assert 50256 in expected
    np.testing.assert_array_equal(dataset.token_ids, expected)
    char_dataset = GPTDataset("abcdef", CharTokenizer(), max_length=2, stride=2)
    np.testing.assert_array_equal(char_dataset[0][0], [ord("a"), ord("b")])


def test_book_example_with_the_real_tokenizer():
    tokenizer = real_gpt2_tokenizer()
    text = (FIXTURES / "the-verdict.txt").read_text(encoding="utf-8")
    loader = create_dataloader(text, batch_size=8, max_length=4, stride=4, shuffle=False, tokenizer=tokenizer)
    inputs, targets = next(iter(loader))
    # The book's output for this call (chapter 2.6): "I HAD always thought Jack Gisburn ..."
    np.testing.assert_array_equal(inputs[:2], [[40, 367, 2885, 1464], [1807, 3619, 402, 271]])
    np.testing.assert_array_equal(targets[0], [367, 2885, 1464, 1807])


def test_memmap_ids_are_not_copied(tmp_path):
    path = tmp_path / "ids.u2"
    np.arange(100, dtype="<u2").tofile(path)
    ids = np.memmap(path, dtype="<u2", mode="r")
    dataset = GPTDataset(ids, None, max_length=8, stride=8)
    assert dataset.token_ids is ids
    inputs, targets = dataset.get_batch([2, 0])
    assert inputs.dtype == np.int64 and inputs.shape == (2, 8)
    np.testing.assert_array_equal(inputs[0], np.arange(16, 24))
    np.testing.assert_array_equal(targets[1], np.arange(1, 9))


@pytest.mark.parametrize(
    "arguments, message",
    [
        ((np.arange(10), None, 0, 1), "max_length: expected an integer >= 1, received 0"),
        ((np.arange(10), None, 4, 0), "stride: expected an integer >= 1, received 0"),
        ((np.arange(10), None, 4.0, 1), "max_length: expected an integer >= 1, received 4.0"),
        ((np.arange(4), None, 4, 1), "has 4 tokens, but one window needs max_length \\+ 1 = 5: 1 tokens short"),
        ((np.zeros((2, 5), dtype=int), None, 2, 1), "text_or_ids: expected a str or a 1-D array .* shape \\(2, 5\\)"),
        ((np.ones(10), None, 2, 1), "text_or_ids: expected integer token ids, received dtype float64"),
        ((np.array([1, -2, 3]), None, 1, 1), "text_or_ids: expected token ids >= 0, received -2"),
        (("some text", None, 2, 1), "tokenizer: expected an object with an encode"),
    ],
)
def test_dataset_errors(arguments, message):
    with pytest.raises(ValueError, match=message):
        GPTDataset(*arguments)


# ------------------------------------------------------------------------------------------------
# DataLoader
# ------------------------------------------------------------------------------------------------


def collect(loader):
    return [(inputs.copy(), targets.copy()) for inputs, targets in loader]


def test_loader_batches_in_order_and_last_partial_batch():
    dataset = GPTDataset(np.arange(23), None, max_length=2, stride=2)  # 11 windows
    loader = DataLoader(dataset, batch_size=4, shuffle=False, drop_last=False)
    batches = collect(loader)
    assert len(loader) == 3 and [b[0].shape for b in batches] == [(4, 2), (4, 2), (3, 2)]
    np.testing.assert_array_equal(batches[0][0], [[0, 1], [2, 3], [4, 5], [6, 7]])
    np.testing.assert_array_equal(batches[2][1], [[17, 18], [19, 20], [21, 22]])
    assert batches[0][0].dtype == np.int64 and batches[0][0].flags.c_contiguous
    dropping = DataLoader(dataset, batch_size=4, shuffle=False, drop_last=True)
    assert len(dropping) == 2 and len(collect(dropping)) == 2


def test_shuffle_is_a_seeded_permutation_per_epoch():
    dataset = GPTDataset(np.arange(41), None, max_length=1, stride=1)  # 40 windows; window i starts at i
    first = DataLoader(dataset, batch_size=5, shuffle=True, seed=7)
    second = DataLoader(dataset, batch_size=5, shuffle=True, seed=7)
    epochs = [np.concatenate([b[0][:, 0] for b in collect(first)]) for _ in range(3)]
    for epoch in epochs:
        assert sorted(epoch.tolist()) == list(range(40))  # every window once per epoch
    assert not np.array_equal(epochs[0], epochs[1])  # a fresh permutation each epoch
    assert first.epoch == 3
    again = [np.concatenate([b[0][:, 0] for b in collect(second)]) for _ in range(3)]
    for a, b in zip(epochs, again):
        np.testing.assert_array_equal(a, b)
    other_seed = np.concatenate([b[0][:, 0] for b in collect(DataLoader(dataset, 5, shuffle=True, seed=8))])
    assert not np.array_equal(other_seed, epochs[0])


@settings(max_examples=15, deadline=None)
@given(stop_after=st.integers(0, 20), shuffle=st.booleans())
def test_state_restore_continues_on_the_same_batches(stop_after, shuffle):
    dataset = GPTDataset(np.arange(31), None, max_length=2, stride=1)  # 29 windows
    batches_per_epoch = math.ceil(29 / 4)  # 8

    def new_loader():
        return DataLoader(dataset, batch_size=4, shuffle=shuffle, drop_last=False, seed=3)

    reference = new_loader()
    uninterrupted = [b for _ in range(3) for b in collect(reference)]

    # Train `stop_after` batches, checkpoint (through JSON), resume in a new loader.
    loader = new_loader()
    seen, state = [], None
    for _ in range(3):
        for batch in loader:
            seen.append((batch[0].copy(), batch[1].copy()))
            if len(seen) == stop_after:
                state = json.loads(json.dumps(loader.state_dict()))
                break
        if state is not None:
            break
    if state is None:
        state = json.loads(json.dumps(loader.state_dict()))
    resumed = new_loader()
    resumed.load_state_dict(state)
    epochs_left = 3 - state["epoch"] + (1 if state["batches_done"] < batches_per_epoch else 0)
    for _ in range(epochs_left):
        seen += collect(resumed)
    assert len(seen) == len(uninterrupted)
    for (a_in, a_out), (b_in, b_out) in zip(seen, uninterrupted):
        np.testing.assert_array_equal(a_in, b_in)
        np.testing.assert_array_equal(a_out, b_out)


class ListDataset:
    """A dataset without get_batch: items are stacked by the loader."""

    def __len__(self):
        return 3

    def __getitem__(self, index):
        return np.full(2, index), np.full(2, -index)


def test_loader_stacks_items_of_a_plain_dataset():
    inputs, targets = next(iter(DataLoader(ListDataset(), batch_size=3)))
    np.testing.assert_array_equal(inputs, [[0, 0], [1, 1], [2, 2]])
    np.testing.assert_array_equal(targets, [[0, 0], [-1, -1], [-2, -2]])


def test_loader_errors():
    dataset = GPTDataset(np.arange(10), None, max_length=4, stride=4)  # 2 windows
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 1, received 0"):
        DataLoader(dataset, batch_size=0)
    with pytest.raises(ValueError, match="has 2 windows, fewer than batch_size=3 with drop_last=True.*1 windows short"):
        DataLoader(dataset, batch_size=3, drop_last=True)
    assert len(DataLoader(dataset, batch_size=3, drop_last=False)) == 1


def test_create_dataloader_defaults_and_ids():
    text = " ".join(["word"] * 800)
    loader = create_dataloader(text, tokenizer=RegexTokenizer())  # 800 pre-tokens; book defaults
    assert (loader.batch_size, loader.shuffle, loader.drop_last, loader.seed) == (4, True, True, None)
    assert (loader.dataset.max_length, loader.dataset.stride) == (256, 128)
    assert len(loader.dataset) == 5  # starts 0, 128, ..., 512 (< 800 - 256)
    with pytest.raises(ValueError, match="fewer than batch_size=4"):
        create_dataloader(np.arange(400), max_length=256, stride=128)  # ids need no tokenizer
    inputs, targets = next(iter(create_dataloader(np.arange(400), batch_size=2, max_length=256, stride=128)))
    assert inputs.shape == (2, 256)
    np.testing.assert_array_equal(targets - inputs, np.ones((2, 256)))


# ------------------------------------------------------------------------------------------------
# train_val_split
# ------------------------------------------------------------------------------------------------


def test_train_val_split_by_ratio():
    train, validation = train_val_split("abcdefghij", 0.9)
    assert (train, validation) == ("abcdefghi", "j")
    ids = np.arange(100, dtype=np.uint16)
    train, validation = train_val_split(ids, 0.75)
    np.testing.assert_array_equal(train, np.arange(75))
    np.testing.assert_array_equal(validation, np.arange(75, 100))
    assert np.shares_memory(train, ids)  # slices, not copies


@pytest.mark.parametrize("ratio", [0, 1, -0.1, 1.5, True, "0.9"])
def test_train_val_split_ratio_errors(ratio):
    with pytest.raises(ValueError, match="train_ratio: expected a number strictly between 0 and 1"):
        train_val_split(np.arange(10), ratio)


def test_validation_split_too_small_says_by_how_much():
    with pytest.raises(
        ValueError,
        match=r"the validation split \(train_ratio=0.9\) has 100 tokens, but one window needs max_length \+ 1 = "
        r"257: 157 tokens short \(train_ratio <= 0.7430 would fit\)",
    ):
        train_val_split(np.arange(1000), 0.9, max_length=256)
    with pytest.raises(ValueError, match=r"the training split .* has 50 tokens.*207 tokens short"):
        train_val_split(np.arange(1000), 0.05, max_length=256)
    text = " ".join(["word"] * 100)
    with pytest.raises(ValueError, match=r"the validation split .* has 10 tokens.*11 tokens short"):
        train_val_split(text, 0.9, max_length=20, tokenizer=RegexTokenizer())
    train, validation = train_val_split(np.arange(1000), 0.7, max_length=256)
    assert len(validation) == 300


# ------------------------------------------------------------------------------------------------
# prepare / load_tokens
# ------------------------------------------------------------------------------------------------

def test_split_at_line_end_cuts_before_trailing_whitespace():
    from minigpt.data import _split_at_line_end

    assert _split_at_line_end("one\ntwo \n\n") == ("one\ntwo", " \n\n")
    assert _split_at_line_end(" \n\n") == ("", " \n\n")
    # GPT-2's regex reads "!\x1c" as one pre-token although Python calls "\x1c" whitespace: no cut.
    assert GPT2_PATTERN.findall("a!\x1c\n") == ["a", "!\x1c", "\n"]
    assert _split_at_line_end("a!\x1c\n") == ("", "a!\x1c\n")


TRICKY_TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n\nAll:\nSpeak, speak.  \n"
    "It's   spaced\r\nout\r\n\r\nand café — ünïcödé\u3000text\n \n\t\nend<|endoftext|>\nNext doc!\n\n"
)


@settings(max_examples=25, deadline=None)
@given(
    text=st.lists(
        st.sampled_from(["a", "bc", " ", "  ", "\n", "\n\n", "\r\n", "\t", "é", "!", "'s", "7", "\u3000", "\x1c"]),
        max_size=60,
    ).map("".join),
    chunk_size=st.integers(1, 16),
)
def test_prepare_chunks_give_the_ids_of_the_whole_text(tmp_path_factory, text, chunk_size):
    directory = tmp_path_factory.mktemp("prepare")
    source = directory / "input.txt"
    source.write_bytes(text.encode("utf-8"))
    tokenizer = RegexTokenizer()
    prepare(source, directory / "tokens.bin", tokenizer, chunk_size=chunk_size, progress=False)
    ids = load_tokens(directory / "tokens.bin")
    assert ids.tolist() == tokenizer.encode(text, allowed_special={"<|endoftext|>"})


def test_prepare_round_trip_and_sidecar(tmp_path):
    source = tmp_path / "input.txt"
    source.write_text(TRICKY_TEXT * 20, encoding="utf-8")
    output = tmp_path / "tokens.bin"
    tokenizer = RegexTokenizer()
    info = prepare(source, output, tokenizer, chunk_size=64, progress=False)
    expected = tokenizer.encode(TRICKY_TEXT * 20, allowed_special={"<|endoftext|>"})
    ids = load_tokens(output)
    assert isinstance(ids, np.memmap) and ids.dtype == np.dtype("<u2") and not ids.flags.writeable
    assert ids.tolist() == expected
    assert output.stat().st_size == 2 * len(expected)  # raw uint16, no header
    assert info == token_file_info(output)
    assert info["dtype"] == "uint16" and info["token_count"] == len(expected)
    assert info["tokenizer"] == "regex-test" and info["source"] == str(source)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["input.txt", "tokens.bin", "tokens.bin.json"]
    dataset = GPTDataset(ids, None, max_length=16, stride=16)
    np.testing.assert_array_equal(dataset[1][0], expected[16:32])


def test_prepare_with_the_real_tokenizer(tmp_path):
    tokenizer = real_gpt2_tokenizer()
    source = FIXTURES / "the-verdict.txt"
    prepare(source, tmp_path / "verdict.bin", tokenizer, chunk_size=500, progress=False)
    expected = tokenizer.encode(source.read_text(encoding="utf-8"), allowed_special={"<|endoftext|>"})
    assert load_tokens(tmp_path / "verdict.bin").tolist() == expected


def test_prepare_uses_uint32_for_large_vocabularies_and_rejects_overflow(tmp_path):
    source = tmp_path / "input.txt"
    source.write_text("abc\n", encoding="utf-8")

    class BigVocabulary:
        n_vocab = 100_000

        def encode(self, text, allowed_special=frozenset()):
            return [70_000 + ord(character) for character in text]

    info = prepare(source, tmp_path / "big.bin", BigVocabulary(), progress=False)
    assert info["dtype"] == "uint32"
    assert load_tokens(tmp_path / "big.bin").tolist() == [70_000 + ord(character) for character in "abc\n"]

    class NoVocabularySize:
        def encode(self, text):
            return [70_000]

    with pytest.raises(ValueError, match="produced token id 70000, outside the uint16 range 0..65535"):
        prepare(source, tmp_path / "bad.bin", NoVocabularySize(), progress=False)
    assert not any(path.name.startswith("bad.bin") for path in tmp_path.iterdir())


def test_interrupted_prepare_keeps_the_previous_file(tmp_path):
    source = tmp_path / "input.txt"
    source.write_text("line one\nline two\nline three\n" * 50, encoding="utf-8")
    output = tmp_path / "tokens.bin"
    prepare(source, output, RegexTokenizer(), progress=False)
    before = load_tokens(output).tolist()

    class FailsMidway(RegexTokenizer):
        calls = 0

        def encode(self, text, allowed_special=frozenset()):
            self.calls += 1
            if self.calls == 3:
                raise KeyboardInterrupt
            return super().encode(text, allowed_special)

    with pytest.raises(KeyboardInterrupt):
        prepare(source, output, FailsMidway(), chunk_size=40, progress=False)
    assert load_tokens(output).tolist() == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["input.txt", "tokens.bin", "tokens.bin.json"]


def test_load_tokens_errors(tmp_path):
    source = tmp_path / "input.txt"
    source.write_text("some words here\n", encoding="utf-8")
    output = tmp_path / "tokens.bin"
    prepare(source, output, RegexTokenizer(), progress=False)
    with open(output, "ab") as damaged:
        damaged.write(b"\x00")
    with pytest.raises(ValueError, match=r"has 9 bytes, but its sidecar records 4 tokens of uint16 = 8 bytes"):
        load_tokens(output)
    (tmp_path / "tokens.bin.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no sidecar tokens.bin.json"):
        load_tokens(output)
    (tmp_path / "other.bin").write_bytes(b"")
    (tmp_path / "other.bin.json").write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="is not a minigpt-tokens version 1 sidecar"):
        load_tokens(tmp_path / "other.bin")
    with pytest.raises(ValueError, match="chunk_size: expected an integer >= 1, received 0"):
        prepare(source, output, RegexTokenizer(), chunk_size=0)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="is not valid UTF-8"):
        prepare(tmp_path / "latin1.txt", output, RegexTokenizer(), progress=False)
