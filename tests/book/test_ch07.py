"""Book chapter 7 (instruction fine-tuning): the chapter's deterministic values, reproduced.

Each test names the notebook cell (ch07/01_main-chapter-code/ch07.ipynb, or
exercise-solutions.ipynb) whose printed output it checks.
"""

import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest

import autograd
from autograd import functional as F
from minigpt.finetune.instruction import (
    InstructionDataset,
    custom_collate_fn,
    extract_response,
    format_input,
    format_response,
    load_instruction_data,
    split_instruction_data,
)
from minigpt.tokenizer import get_encoding

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "instruction"


@pytest.fixture(scope="module")
def data():
    return load_instruction_data()


@pytest.fixture(scope="module")
def tokenizer():
    return get_encoding("gpt2")


def test_7_2_the_data(data):
    # "Number of entries: 1100" and the two example entries printed in section 7.2.
    assert len(data) == 1100
    assert data[50] == {"instruction": "Identify the correct spelling of the following word.", "input": "Ocassion",
                        "output": "The correct spelling is 'Occasion.'"}
    assert data[999] == {"instruction": "What is an antonym of 'complicated'?", "input": "",
                         "output": "An antonym of 'complicated' is 'simple'."}


def test_7_2_format_input_with_and_without_input(data):
    assert format_input(data[50]) + format_response(data[50]) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n"
        "\n"
        "### Instruction:\n"
        "Identify the correct spelling of the following word.\n"
        "\n"
        "### Input:\n"
        "Ocassion\n"
        "\n"
        "### Response:\n"
        "The correct spelling is 'Occasion.'"
    )
    assert format_input(data[999]) + f"\n\n### Response:\n{data[999]['output']}" == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n"
        "\n"
        "### Instruction:\n"
        "What is an antonym of 'complicated'?\n"
        "\n"
        "### Response:\n"
        "An antonym of 'complicated' is 'simple'."
    )


def test_7_2_split_sizes_and_order(data):
    train_data, test_data, val_data = split_instruction_data(data)
    # "Training set length: 935", "Validation set length: 55", "Test set length: 110"
    assert (len(train_data), len(val_data), len(test_data)) == (935, 55, 110)
    assert train_data + test_data + val_data == data  # in the file's order: train, test, validation
    # The prompt of val_data[0] that the chapter generates from (section 7.5).
    assert format_input(val_data[0]) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n"
        "\n"
        "### Instruction:\n"
        "Convert the active sentence to passive: 'The chef cooks the meal every day.'"
    )
    # The first three test entries of section 7.6's answers.
    assert [entry["instruction"] for entry in test_data[:3]] == [
        "Rewrite the sentence using a simile.",
        "What type of cloud is typically associated with thunderstorms?",
        "Name the author of 'Pride and Prejudice'.",
    ]


def test_7_3_endoftext_id(tokenizer):
    assert tokenizer.encode("<|endoftext|>", allowed_special={"<|endoftext|>"}) == [50256]


BOOK_BATCH = ([0, 1, 2, 3, 4], [5, 6], [7, 8, 9])


def test_7_3_custom_collate_fn_example():
    inputs, targets = custom_collate_fn(BOOK_BATCH)
    np.testing.assert_array_equal(inputs, [[0, 1, 2, 3, 4], [5, 6, 50256, 50256, 50256], [7, 8, 9, 50256, 50256]])
    np.testing.assert_array_equal(targets, [[1, 2, 3, 4, 50256], [6, 50256, -100, -100, -100], [8, 9, 50256, -100, -100]])
    assert inputs.dtype == targets.dtype == np.int64


def test_7_3_ignored_targets_do_not_change_the_loss():
    logits_1 = autograd.tensor([[-1.0, 1.0], [-0.5, 1.5]])
    targets_1 = autograd.tensor([0, 1])
    loss_1 = F.cross_entropy(logits_1, targets_1)
    assert loss_1.item() == pytest.approx(1.1269, abs=5e-5)  # tensor(1.1269)

    logits_2 = autograd.tensor([[-1.0, 1.0], [-0.5, 1.5], [-0.5, 1.5]])
    targets_2 = autograd.tensor([0, 1, 1])
    loss_2 = F.cross_entropy(logits_2, targets_2)
    assert loss_2.item() == pytest.approx(0.7936, abs=5e-5)  # tensor(0.7936)

    targets_3 = autograd.tensor([0, 1, -100])
    loss_3 = F.cross_entropy(logits_2, targets_3)
    assert loss_3.item() == pytest.approx(1.1269, abs=5e-5)
    assert loss_1.item() == loss_3.item()  # "loss_1 == loss_3: tensor(True)"


def test_7_3_a_collated_training_example(data, tokenizer):
    # The row printed in section 7.3 (inputs[0] and targets[0] of a batch 69 tokens long).
    train_data, _, _ = split_instruction_data(data)
    dataset = InstructionDataset(train_data, tokenizer)
    example = dataset[563]
    assert train_data[563]["input"] == "The baby is very cute."
    longest = list(range(69))  # another item of 69 tokens sets the batch's length, as in the book
    collate = partial(custom_collate_fn, allowed_max_length=1024)
    inputs, targets = collate([example, longest])
    expected_ids = [
        21106, 318, 281, 12064, 326, 8477, 257, 4876, 13, 19430, 257, 2882, 326, 20431, 32543, 262, 2581, 13, 198, 198,
        21017, 46486, 25, 198, 30003, 6525, 262, 6827, 1262, 257, 985, 576, 13, 198, 198, 21017, 23412, 25, 198, 464,
        5156, 318, 845, 13779, 13, 198, 198, 21017, 18261, 25, 198, 464, 5156, 318, 355, 13779, 355, 257, 4936, 13,
    ]
    np.testing.assert_array_equal(inputs[0], expected_ids + [50256] * 9)
    np.testing.assert_array_equal(targets[0], expected_ids[1:] + [50256] + [-100] * 9)


def test_exercise_7_2_masked_instruction(tokenizer):
    sample_data = [
        {"instruction": "What is an antonym of 'complicated'?", "input": "", "output": "An antonym of 'complicated' is 'simple'."},
        {"instruction": "Sort the following list in alphabetical order.", "input": "Zebra, Elephant, Crocodile", "output": "Crocodile, Elephant, Zebra"},
        {"instruction": "Arrange the given numbers in descending order.", "input": "5, 12, 8, 3, 15", "output": "15, 12, 8, 5, 3."},
    ]
    dataset = InstructionDataset(sample_data, tokenizer)
    inputs, targets = custom_collate_fn([dataset[i] for i in range(3)], mask_instruction=True)
    assert inputs.shape == targets.shape == (3, 64)  # torch.Size([3, 64])
    np.testing.assert_array_equal(inputs[1], [
        21106, 318, 281, 12064, 326, 8477, 257, 4876, 13, 19430, 257, 2882, 326, 20431, 32543, 262, 2581, 13, 198, 198,
        21017, 46486, 25, 198, 42758, 262, 1708, 1351, 287, 24830, 605, 1502, 13, 198, 198, 21017, 23412, 25, 198, 57,
        37052, 11, 42651, 11, 9325, 19815, 576, 198, 198, 21017, 18261, 25, 198, 34, 12204, 375, 576, 11, 42651, 11,
        1168, 37052, 50256, 50256,
    ])
    np.testing.assert_array_equal(targets[1], [-100] * 46 + [
        198, 198, 21017, 18261, 25, 198, 34, 12204, 375, 576, 11, 42651, 11, 1168, 37052, 50256, -100, -100,
    ])
    # The exercise's own item format, (instruction_length, ids), gives the same batch.
    pairs = [(dataset.instruction_lengths[i], list(dataset[i])) for i in range(3)]
    for got, expected in zip(custom_collate_fn(pairs, mask_instruction=True), (inputs, targets)):
        np.testing.assert_array_equal(got, expected)
    assert tokenizer.decode(inputs[1].tolist()).endswith("### Response:\nCrocodile, Elephant, Zebra<|endoftext|><|endoftext|>")


def test_7_7_extracting_responses():
    # Section 7.7 keeps what follows the prompt, without "### Response:", stripped.
    entries = json.loads((FIXTURES / "instruction-data-with-response.json").read_text())
    entry = entries[0]
    assert entry["model_response"] == "The car is as fast as a bullet."
    input_text = format_input(entry)
    generated_text = input_text + "\n\n### Response:\nThe car is as fast as a bullet.\n"
    assert extract_response(generated_text, input_text) == "The car is as fast as a bullet."
    # The untrained gpt2-medium's answer of section 7.5 repeats the prompt's headers.
    input_text = "Below is an instruction ... every day.'"
    generated = input_text + "\n\n### Response:\n\nThe chef cooks the meal every day.\n\n### Instruction:\n\nConvert"
    assert extract_response(generated, input_text) == "The chef cooks the meal every day.\n\n### Instruction:\n\nConvert"


def test_7_4_to_7_6_the_books_loaders_and_training_loop(data, tokenizer, capsys):
    """Sections 7.4-7.6 in miniature: the book's calls, a small GPT, a few steps of train_model_simple."""
    import autograd as torch
    from minigpt.data import DataLoader
    from minigpt.model import GPTModel
    from minigpt.optim import AdamW
    from minigpt.train import calc_loss_loader, train_model_simple

    train_data, _, val_data = split_instruction_data(data)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    customized_collate_fn = partial(custom_collate_fn, device=device, allowed_max_length=1024)
    torch.manual_seed(123)
    train_loader = DataLoader(InstructionDataset(train_data[:16], tokenizer), batch_size=8, collate_fn=customized_collate_fn,
                              shuffle=True, drop_last=True, num_workers=0)
    val_loader = DataLoader(InstructionDataset(val_data[:8], tokenizer), batch_size=8, collate_fn=customized_collate_fn,
                            shuffle=False, drop_last=False, num_workers=0)
    assert len(train_loader) == 2
    inputs, targets = next(iter(val_loader))
    assert inputs.shape == targets.shape and inputs.shape[0] == 8
    assert (targets == 50256).sum() == 8  # one end-of-text target per row, the rest of the padding ignored

    model = GPTModel({"vocab_size": 50257, "context_length": 128, "drop_rate": 0.0, "qkv_bias": True,
                      "emb_dim": 32, "n_layers": 1, "n_heads": 2}, rng=0)
    with torch.no_grad():
        val_loss_before = calc_loss_loader(val_loader, model, device, num_batches=5)
    optimizer = AdamW(model.parameters(), lr=0.001, weight_decay=0.1)
    train_losses, val_losses, tokens_seen = train_model_simple(
        model, train_loader, val_loader, optimizer, device, num_epochs=3, eval_freq=5, eval_iter=5,
        start_context=format_input(val_data[0]), tokenizer=tokenizer,
    )
    assert len(train_losses) == len(val_losses) == len(tokens_seen) == 2  # steps 0 and 5 of 6
    assert val_losses[-1] < val_loss_before
    assert "Ep 3 (Step 000005): Train loss" in capsys.readouterr().out
