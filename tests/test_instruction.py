"""minigpt.finetune.instruction: data loading, the collate function's rules, saving responses."""

import json

import numpy as np
import pytest

import autograd
from hypothesis import given
from hypothesis import strategies as st

from minigpt.finetune.instruction import (
    InstructionDataset,
    InstructionExample,
    custom_collate_fn,
    extract_response,
    format_input,
    generate_responses,
    load_instruction_data,
    save_responses,
    split_instruction_data,
)

PAD = 50256


def book_collate(batch, pad_token_id=PAD, ignore_index=-100, allowed_max_length=None, instruction_lengths=None):
    """The book's listing 7.5 (with exercise 7.2's masking), transcribed with plain lists."""
    batch_max_length = max(len(item) + 1 for item in batch)
    inputs_lst, targets_lst = [], []
    for row, item in enumerate(batch):
        padded = list(item) + [pad_token_id] + [pad_token_id] * (batch_max_length - len(item) - 1)
        inputs, targets = padded[:-1], padded[1:]
        indices = [i for i, t in enumerate(targets) if t == pad_token_id]
        for i in indices[1:]:
            targets[i] = ignore_index
        if instruction_lengths is not None:
            for i in range(max(instruction_lengths[row] - 1, 0)):
                targets[i] = ignore_index
        if allowed_max_length is not None:
            inputs, targets = inputs[:allowed_max_length], targets[:allowed_max_length]
        inputs_lst.append(inputs)
        targets_lst.append(targets)
    return np.array(inputs_lst), np.array(targets_lst)


# Token ids from a small alphabet that includes the pad id, so texts that contain <|endoftext|>
# themselves are tried too.
items = st.lists(st.sampled_from([0, 1, 2, 7, 50255, PAD]), min_size=1, max_size=12)


@given(
    batch=st.lists(items, min_size=1, max_size=5),
    allowed_max_length=st.one_of(st.none(), st.integers(1, 14)),
    mask=st.booleans(),
    data=st.data(),
)
def test_collate_matches_the_books_loop(batch, allowed_max_length, mask, data):
    lengths = [data.draw(st.integers(0, len(item))) for item in batch] if mask else None
    examples = [InstructionExample(item, length) for item, length in zip(batch, lengths)] if mask else batch
    inputs, targets = custom_collate_fn(examples, allowed_max_length=allowed_max_length, mask_instruction=mask)
    expected_inputs, expected_targets = book_collate(batch, allowed_max_length=allowed_max_length, instruction_lengths=lengths)
    np.testing.assert_array_equal(inputs, expected_inputs)
    np.testing.assert_array_equal(targets, expected_targets)


def test_collate_other_pad_and_ignore_ids():
    inputs, targets = custom_collate_fn([[3, 4], [5]], pad_token_id=0, ignore_index=-1)
    np.testing.assert_array_equal(inputs, [[3, 4], [5, 0]])
    np.testing.assert_array_equal(targets, [[4, 0], [0, -1]])


def test_collate_truncates_only_when_asked():
    inputs, targets = custom_collate_fn([list(range(10))], allowed_max_length=4)
    np.testing.assert_array_equal(inputs, [[0, 1, 2, 3]])
    np.testing.assert_array_equal(targets, [[1, 2, 3, 4]])
    assert custom_collate_fn([list(range(10))])[0].shape == (1, 10)


@pytest.mark.parametrize(
    "kwargs, batch, message",
    [
        ({}, [], "batch: expected at least one item"),
        ({}, [[1], []], "batch: item 1 must be a non-empty 1-D sequence"),
        ({}, [[1.5, 2.0]], "batch: item 0 must be a non-empty 1-D sequence of token ids"),
        ({"allowed_max_length": 0}, [[1]], "allowed_max_length: expected an integer >= 1"),
        ({"mask_instruction": True}, [[1, 2]], "batch: item 0 has no instruction length"),
        ({"mask_instruction": True}, [(5, [1, 2])], "item 0 has instruction_length 5, expected 0..2"),
    ],
)
def test_collate_errors(kwargs, batch, message):
    with pytest.raises(ValueError, match=message):
        custom_collate_fn(batch, **kwargs)


def test_collate_accepts_the_cpu_device():
    for device in (None, "cpu", autograd.device("cpu")):
        custom_collate_fn([[1, 2]], device=device)
    with pytest.raises(RuntimeError, match="custom_collate_fn: device 'cuda' is not available: minigpt runs on the CPU only"):
        custom_collate_fn([[1]], device="cuda")


def test_dataset_items_are_lists_with_their_prompt_length():
    class Characters:  # one id per character: lengths are easy to count
        def encode(self, text):
            return [ord(c) for c in text]

    entry = {"instruction": "Say hi.", "input": "", "output": "Hi."}
    dataset = InstructionDataset([entry], Characters())
    assert len(dataset) == 1
    item = dataset[0]
    assert isinstance(item, list) and item.instruction_length == len(format_input(entry))
    assert "".join(map(chr, item)) == format_input(entry) + "\n\n### Response:\nHi."
    with pytest.raises(ValueError, match="tokenizer: expected an object with an encode"):
        InstructionDataset([entry], None)


def test_format_input_names_a_missing_key():
    with pytest.raises(KeyError, match="'input' is missing"):
        format_input({"instruction": "x"})


def test_load_instruction_data_from_a_file(tmp_path):
    path = tmp_path / "data.json"
    entries = [{"instruction": "a", "input": "", "output": "b", "extra": 1}]
    path.write_text(json.dumps(entries))
    assert load_instruction_data(path) == entries
    for content, message in [
        ("{", "is not valid JSON"),
        ('{"a": 1}', "expected a JSON list of entries, received a dict"),
        ("[1]", "entry 0 is a int, expected an object"),
        ('[{"instruction": "a", "output": "b"}]', "entry 0 field 'input' is missing, expected a str"),
        ('[{"instruction": "a", "input": "", "output": 3}]', "entry 0 field 'output' is a int, expected a str"),
    ]:
        path.write_text(content)
        with pytest.raises(ValueError, match=message):
            load_instruction_data(path)
    with pytest.raises(FileNotFoundError):
        load_instruction_data(tmp_path / "missing.json")


def test_split_fractions():
    data = list(range(20))
    assert split_instruction_data(data, 0.5, 0.25) == (list(range(10)), list(range(10, 15)), list(range(15, 20)))
    with pytest.raises(ValueError, match="train_fraction: expected a number in \\[0, 1\\]"):
        split_instruction_data(data, 1.5)
    with pytest.raises(ValueError, match="train_fraction \\+ test_fraction: expected at most 1"):
        split_instruction_data(data, 0.9, 0.2)


def test_extract_response_needs_the_prompt_first():
    with pytest.raises(ValueError, match="generated_text: expected it to start with input_text"):
        extract_response("something else", "Below is")


def test_save_responses(tmp_path):
    entries = [{"instruction": "a", "input": "", "output": "b"}]
    path = tmp_path / "responses.json"
    written = save_responses(entries, ["B"], path)
    assert json.loads(path.read_text()) == written == [{"instruction": "a", "input": "", "output": "b", "model_response": "B"}]
    assert "model_response" not in entries[0]  # the input entries are left as they were
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(ValueError, match="responses: expected one per entry \\(1\\), received 2"):
        save_responses(entries, ["B", "C"], path)


def test_generate_responses_batched_equals_one_by_one():
    from minigpt.model import GPTModel
    from minigpt.tokenizer import get_encoding

    tokenizer = get_encoding("gpt2")
    model = GPTModel(dict(vocab_size=50257, context_length=96, emb_dim=16, n_heads=2, n_layers=2, drop_rate=0.0,
                          qkv_bias=True, tie_weights=True), rng=1)
    entries = load_instruction_data()[:5]  # prompts of different lengths, with and without input
    assert len({len(tokenizer.encode(format_input(entry))) for entry in entries}) > 1
    # Take a token that this random model says early after prompt 1 as the end token: some rows of
    # a batch then stop early while others run on to max_new_tokens.
    from minigpt.generate import generate

    free = [generate(model, np.array([tokenizer.encode(format_input(entry))]), 12, 96)[0, -12:] for entry in entries]
    stop = int(free[1][2])
    assert any(stop not in row for row in free)  # some row never stops
    one_by_one = generate_responses(model, tokenizer, entries, max_new_tokens=12, eos_id=stop, batch_size=1, progress=False)
    batched = generate_responses(model, tokenizer, entries, max_new_tokens=12, eos_id=stop, batch_size=3, progress=False)
    assert batched == one_by_one
    assert batched[1] == tokenizer.decode(free[1][:list(free[1]).index(stop)].tolist()).strip()
    assert all(isinstance(response, str) and response == response.strip() for response in batched)
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 1, received 0"):
        generate_responses(model, tokenizer, entries, batch_size=0)
