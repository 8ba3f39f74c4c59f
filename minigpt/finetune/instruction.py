"""Instruction fine-tuning (book chapter 7): from a GPT to an assistant that follows instructions.

What this file adds, in the chapter's order:

- 7.2 the data: `load_instruction_data` (the book's 1,100 examples, bundled), `format_input` (the
  Alpaca-style prompt, character for character as the book's), `split_instruction_data` (85 %
  train, 10 % test, 5 % validation, in the book's order);
- 7.3 batches: `InstructionDataset` (each example tokenised once: prompt + response) and
  `custom_collate_fn`, which pads a batch with the end-of-text id, shifts the targets by one,
  keeps the first end-of-text target of each row (so that the model learns to stop) and replaces
  the rest of the padding targets by -100, which the cross-entropy ignores; exercise 7.2's
  `mask_instruction=True` also ignores the prompt's targets;
- 7.5-7.7 training is the book's `train_model_simple` (or `minigpt.trainer.Trainer`), then
  `generate_responses` answers the test set with the KV cache, batched, stopping at end-of-text,
  `extract_response` keeps the text after the prompt without "### Response:", and
  `save_responses` writes the book's `instruction-data-with-response.json` (one `model_response`
  per entry).

One example as the model sees it (the book's `data[50]`; blank lines as written):

    Below is an instruction that describes a task. Write a response that appropriately completes the request.

    ### Instruction:
    Identify the correct spelling of the following word.

    ### Input:
    Ocassion

    ### Response:
    The correct spelling is 'Occasion.'<|endoftext|>

Shape letters: B batch (examples), T tokens of the longest example of the batch.

References: Raschka, "Build a Large Language Model (From Scratch)", chapter 7 (sections 7.2-7.7,
exercise 7.2: masking the instructions); Taori et al. 2023, Stanford Alpaca (the prompt format).
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Mapping, Sequence
from importlib import resources

import numpy as np

from autograd.device import check_device
from minigpt.data import Dataset

__all__ = [
    "RESPONSE_HEADER",
    "format_input",
    "format_response",
    "load_instruction_data",
    "split_instruction_data",
    "InstructionExample",
    "InstructionDataset",
    "custom_collate_fn",
    "extract_response",
    "generate_responses",
    "save_responses",
]

# What separates the prompt from the answer in the training text (book section 7.2).
RESPONSE_HEADER = "\n\n### Response:\n"
# The marker that `extract_response` removes from a generated answer (book section 7.7).
RESPONSE_MARKER = "### Response:"
# The fields every entry of an instruction file has (the book's instruction-data.json).
ENTRY_KEYS = ("instruction", "input", "output")


# --------------------------------------------------------------------------------------------
# 7.2 The data
# --------------------------------------------------------------------------------------------


def format_input(entry: Mapping) -> str:
    """The book's Alpaca-style prompt of one entry: the instruction and, if any, the input.

    "Below is an instruction that describes a task. Write a response that appropriately completes
    the request.\\n\\n### Instruction:\\n{instruction}" followed by "\\n\\n### Input:\\n{input}" when
    the input is not empty. The response header is not included (see `format_response`).

    Args:
        entry: a mapping with str values under "instruction" and "input" (an empty input is left out).

    Returns:
        The prompt, a str.

    Raises:
        KeyError: the entry has no "instruction" or no "input".

    Example:
        >>> format_input({"instruction": "What is an antonym of 'complicated'?", "input": ""})
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.\\n\\n### Instruction:\\nWhat is an antonym of 'complicated'?"

    References: book section 7.2, listing 7.2 (format_input).
    """
    for key in ("instruction", "input"):
        if key not in entry:
            raise KeyError(f"entry: expected the keys 'instruction' and 'input', but {key!r} is missing from {dict(entry)!r}")
    instruction_text = (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request."
        f"\n\n### Instruction:\n{entry['instruction']}"
    )
    input_text = f"\n\n### Input:\n{entry['input']}" if entry["input"] else ""
    return instruction_text + input_text


def format_response(entry: Mapping) -> str:
    """The training text that follows the prompt: "\\n\\n### Response:\\n" + the entry's output (book 7.2)."""
    return f"{RESPONSE_HEADER}{entry['output']}"


def load_instruction_data(path: str | os.PathLike | None = None) -> list[dict]:
    """Load a list of instruction examples: the book's bundled 1,100, or a JSON file of the same shape.

    The bundled file is `minigpt/corpora/instruction-data.json`, the book's chapter-7 data
    (rasbt/LLMs-from-scratch, ch07/01_main-chapter-code, Apache-2.0); the book downloads it, here
    it ships with the package.

    Args:
        path: None for the bundled data, or a JSON file holding a list of objects, each with str
            fields "instruction", "input" (may be empty) and "output"; other fields are kept.

    Returns:
        The list of entries (dicts), in the file's order.

    Raises:
        FileNotFoundError: no file at `path`.
        ValueError: the file is not valid JSON, not a list, or an entry lacks a field or has a
            field that is not a str (the message names the entry's index and the field).

    References: book section 7.2 (download_and_load_file, listing 7.1).
    """
    if path is None:
        path = resources.files("minigpt").joinpath("corpora", "instruction-data.json")
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except json.JSONDecodeError as error:
        raise ValueError(f"path: {os.fspath(path)!r} is not valid JSON ({error})") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"path: {os.fspath(path)!r} is not UTF-8 text ({error})") from None
    if not isinstance(data, list):
        raise ValueError(f"path: {os.fspath(path)!r}: expected a JSON list of entries, received a {type(data).__name__}")
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise ValueError(f"path: {os.fspath(path)!r}: entry {index} is a {type(entry).__name__}, expected an object")
        for key in ENTRY_KEYS:
            if not isinstance(entry.get(key), str):
                found = "missing" if key not in entry else f"a {type(entry[key]).__name__}"
                raise ValueError(f"path: {os.fspath(path)!r}: entry {index} field {key!r} is {found}, expected a str")
    return data


def split_instruction_data(data: Sequence, train_fraction: float = 0.85, test_fraction: float = 0.10) -> tuple[list, list, list]:
    """Split entries in order into (train_data, test_data, val_data), as the book does.

    The first int(N * train_fraction) entries train, the next int(N * test_fraction) test, and
    the rest (5 % by default) validate: for the book's 1,100 entries, 935 / 110 / 55. The data
    is not shuffled (the book's file is already in random order).

    Raises:
        ValueError: fractions outside [0, 1] or adding up to more than 1.

    References: book section 7.2 (listing 7.3's split).
    """
    for name, value in (("train_fraction", train_fraction), ("test_fraction", test_fraction)):
        if not isinstance(value, numbers.Real) or not 0 <= value <= 1:
            raise ValueError(f"{name}: expected a number in [0, 1], received {value!r}")
    if train_fraction + test_fraction > 1:
        raise ValueError(f"train_fraction + test_fraction: expected at most 1, received {train_fraction} + {test_fraction}")
    train_portion = int(len(data) * train_fraction)  # 85% for training
    test_portion = int(len(data) * test_fraction)  # 10% for testing
    train_data = list(data[:train_portion])
    test_data = list(data[train_portion:train_portion + test_portion])
    val_data = list(data[train_portion + test_portion:])  # the remaining 5% for validation
    return train_data, test_data, val_data


# --------------------------------------------------------------------------------------------
# 7.3 Batches
# --------------------------------------------------------------------------------------------


class InstructionExample(list):
    """The token ids of one example (prompt + response), a list as the book's, that also knows
    `instruction_length`: how many of its first ids are the prompt (`format_input`), which
    `custom_collate_fn(..., mask_instruction=True)` ignores (book exercise 7.2)."""

    def __init__(self, ids, instruction_length: int):
        super().__init__(ids)
        self.instruction_length = int(instruction_length)


class InstructionDataset(Dataset):
    """The book's instruction dataset: each entry tokenised once, prompt + response.

    Item i is `tokenizer.encode(format_input(entry) + format_response(entry))` as an
    `InstructionExample` (a list of ids that also carries `instruction_length`, the number of
    tokens of `format_input(entry)` alone, for exercise 7.2's masking). Examples have different
    lengths; `custom_collate_fn` pads them into a batch.

    Args:
        data: a list of entries (see `load_instruction_data`).
        tokenizer: anything with `encode(text)`, e.g. `minigpt.tokenizer.get_encoding("gpt2")`.

    Attributes:
        data, encoded_texts (list of InstructionExample), instruction_lengths (list of int).

    References: book section 7.3, listing 7.4 (InstructionDataset); exercise 7.2 (instruction lengths).
    """

    def __init__(self, data: Sequence[Mapping], tokenizer):
        if tokenizer is None or not callable(getattr(tokenizer, "encode", None)):
            raise ValueError(f"tokenizer: expected an object with an encode(text) method, received {tokenizer!r}")
        self.data = data
        self.encoded_texts = []
        self.instruction_lengths = []
        for entry in data:
            instruction_plus_input = format_input(entry)
            # NOTE: the prompt is encoded on its own to count its tokens. GPT-2's pre-tokenizer
            # splits before "\n\n###", so these are exactly the first ids of the full text.
            instruction_length = len(tokenizer.encode(instruction_plus_input))
            full_text = instruction_plus_input + format_response(entry)
            self.encoded_texts.append(InstructionExample(tokenizer.encode(full_text), instruction_length))
            self.instruction_lengths.append(instruction_length)

    def __getitem__(self, index: int) -> InstructionExample:
        return self.encoded_texts[index]

    def __len__(self) -> int:
        return len(self.data)


def _unpack_item(item, index: int, mask_instruction: bool) -> tuple[list, int]:
    """(ids, instruction_length) of one batch item: a list of ids (an `InstructionExample` knows
    its instruction length), or the (instruction_length, ids) pair of the book's exercise 7.2."""
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], numbers.Integral):
        instruction_length, ids = item
    else:
        ids, instruction_length = item, getattr(item, "instruction_length", None)
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.size == 0 or ids.dtype.kind not in "iu":
        raise ValueError(f"batch: item {index} must be a non-empty 1-D sequence of token ids, received {item!r:.80}")
    if mask_instruction:
        if instruction_length is None:
            raise ValueError(
                f"batch: item {index} has no instruction length, which mask_instruction=True needs: give "
                "InstructionDataset items or (instruction_length, ids) pairs"
            )
        if not 0 <= instruction_length <= ids.size:
            raise ValueError(f"batch: item {index} has instruction_length {instruction_length}, expected 0..{ids.size} (its length)")
    return ids, instruction_length


def custom_collate_fn(
    batch,
    pad_token_id: int = 50256,
    ignore_index: int = -100,
    allowed_max_length: int | None = None,
    mask_instruction: bool = False,
    device=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pad a batch of examples into (inputs, targets) for next-token training (book listing 7.5).

    For every item: append one `pad_token_id` (GPT-2's <|endoftext|>, 50256) and pad with it to
    the longest item + 1; the inputs are all but the last position, the targets all but the
    first (shifted by one). In each row of the targets the first `pad_token_id` is kept, so the
    model learns to end its answer there, and every later one becomes `ignore_index`, which
    `cross_entropy` skips. With `mask_instruction` the targets that predict the prompt's tokens
    (the first instruction_length - 1) are ignored too (exercise 7.2). Last, both are cut to
    `allowed_max_length` positions.

    The book's example: items [0, 1, 2, 3, 4], [5, 6], [7, 8, 9] give

        inputs  [[0, 1, 2, 3, 4], [5, 6, 50256, 50256, 50256], [7, 8, 9, 50256, 50256]]
        targets [[1, 2, 3, 4, 50256], [6, 50256, -100, -100, -100], [8, 9, 50256, -100, -100]]

    Use it as a data loader's collate function with its settings bound:
    `functools.partial(custom_collate_fn, allowed_max_length=1024)`.

    Args:
        batch: a sequence of items, each a list (or 1-D int array) of token ids, e.g.
            `InstructionDataset` items, or (instruction_length, ids) pairs as in exercise 7.2.
        pad_token_id: the id that ends and pads each example.
        ignore_index: the target id the loss ignores (PyTorch's and `cross_entropy`'s -100).
        allowed_max_length: keep at most this many positions (the model's context length);
            None keeps all.
        mask_instruction: also ignore the targets inside the prompt (book exercise 7.2); needs
            items that know their instruction length.
        device: the book's device argument: None, "cpu" or a CPU `autograd.device` (minigpt
            computes on the CPU, so nothing moves).

    Returns:
        (inputs, targets): int64 arrays of shape (B, T), T = the longest item's length (the
        extra end-of-text position is taken by the shift), or allowed_max_length if smaller.

    Raises:
        ValueError: an empty batch, an item that is not a non-empty 1-D sequence of integer ids,
            allowed_max_length < 1, or mask_instruction with items whose instruction length is
            unknown or longer than the item.
        RuntimeError: a device other than the CPU.

    References: book section 7.3, listings 7.5 and 7.6 (custom_collate_fn); exercise 7.2.
    """
    check_device(device, "custom_collate_fn")
    if allowed_max_length is not None and (
        isinstance(allowed_max_length, bool) or not isinstance(allowed_max_length, numbers.Integral) or allowed_max_length < 1
    ):
        raise ValueError(f"allowed_max_length: expected an integer >= 1 or None, received {allowed_max_length!r}")
    if len(batch) == 0:
        raise ValueError("batch: expected at least one item, received an empty batch")
    items = [_unpack_item(item, index, mask_instruction) for index, item in enumerate(batch)]
    batch_max_length = max(ids.size for ids, _ in items) + 1  # room for one end-of-text after the longest

    padded = np.full((len(items), batch_max_length), pad_token_id, dtype=np.int64)  # (B, T + 1)
    for row, (ids, _) in enumerate(items):
        padded[row, :ids.size] = ids  # the rest of the row is end-of-text: one ends it, more pad it
    inputs = padded[:, :-1].copy()  # (B, T): drop the extra position
    targets = padded[:, 1:].copy()  # (B, T): shifted one to the right

    # Keep the first pad id of each row as a target, ignore the ones after it.
    is_pad = targets == pad_token_id  # (B, T)
    targets[is_pad & (np.cumsum(is_pad, axis=1) > 1)] = ignore_index

    if mask_instruction:
        for row, (_, instruction_length) in enumerate(items):
            # Targets 0 .. L-2 predict the prompt's tokens 1 .. L-1; target L-1 predicts the
            # first token of the response header, which is learnt (as the book's exercise 7.2).
            targets[row, :max(instruction_length - 1, 0)] = ignore_index

    if allowed_max_length is not None:
        inputs = inputs[:, :allowed_max_length]
        targets = targets[:, :allowed_max_length]
    return np.ascontiguousarray(inputs), np.ascontiguousarray(targets)


# --------------------------------------------------------------------------------------------
# 7.7 Responses
# --------------------------------------------------------------------------------------------


def extract_response(generated_text: str, input_text: str) -> str:
    """The answer in a generated text: what follows the prompt, without "### Response:", stripped.

    `generated_text` is the decoded prompt + generated tokens; `input_text` the prompt
    (`format_input(entry)`). Book section 7.7:
    `generated_text[len(input_text):].replace("### Response:", "").strip()`.

    Raises:
        ValueError: `generated_text` does not start with `input_text`.
    """
    if not generated_text.startswith(input_text):
        raise ValueError(
            f"generated_text: expected it to start with input_text ({input_text[:40]!r}...), received {generated_text[:40]!r}..."
        )
    return generated_text[len(input_text):].replace(RESPONSE_MARKER, "").strip()


def generate_responses(model, tokenizer, entries: Sequence[Mapping], max_new_tokens: int = 256, eos_id: int = 50256,
                       batch_size: int = 8, context_size: int | None = None, progress: bool = True) -> list[str]:
    """The model's answer to each entry: greedy decoding after `format_input(entry)`, stopped at
    end-of-text, cut out with `extract_response` (book section 7.7).

    The book answers one entry at a time; here `batch_size` prompts of different lengths run
    together through the KV cache (`minigpt.generate.generate` with a list of prompts), each
    row stopping at its own end-of-text, and every answer is the one the prompt gets alone.

    Args:
        model: a GPTModel (put in eval mode while generating).
        tokenizer: the model's tokenizer (`encode`, `decode`).
        entries: instruction entries (the test split).
        max_new_tokens: tokens generated at most per answer (the book: 256).
        eos_id: the end-of-text id that ends an answer (GPT-2's 50256); not part of the answer.
        batch_size: prompts generated together (>= 1).
        context_size: tokens the model sees; default its context length.
        progress: show a tqdm progress bar (one tick per entry).

    Returns:
        One answer (str) per entry, in order.

    Raises:
        ValueError: batch_size < 1 (and see `generate`).
    """
    from tqdm.auto import tqdm

    from minigpt.generate import generate

    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, received {batch_size!r}")
    context_size = context_size or model.pos_emb.weight.shape[0]
    responses = []
    with tqdm(total=len(entries), desc="Generating responses", disable=not progress) as bar:
        for start in range(0, len(entries), batch_size):
            input_texts = [format_input(entry) for entry in entries[start:start + batch_size]]
            prompts = [np.asarray(tokenizer.encode(text), dtype=np.int64) for text in input_texts]
            # A list of prompts: each output row is its prompt + new tokens, cut before eos_id.
            outputs = generate(model, prompts, max_new_tokens=max_new_tokens, context_size=context_size, eos_id=eos_id)
            for input_text, token_ids in zip(input_texts, outputs):
                responses.append(extract_response(tokenizer.decode(token_ids.tolist()), input_text))
            bar.update(len(input_texts))
    return responses


def save_responses(entries: Sequence[Mapping], responses: Sequence[str], path: str | os.PathLike, json_key: str = "model_response") -> list[dict]:
    """Write the entries with each one's response under `json_key` as indented JSON (book 7.7).

    The file is the book's `instruction-data-with-response.json`: a list of the test entries,
    each with its "instruction", "input", "output" and "model_response". It is written to a
    temporary file and renamed into place, so an interrupted save leaves no half file.

    Returns:
        The list of entries written (new dicts; the input entries are not changed).

    Raises:
        ValueError: a different number of entries and responses.
    """
    if len(entries) != len(responses):
        raise ValueError(f"responses: expected one per entry ({len(entries)}), received {len(responses)}")
    with_responses = [{**entry, json_key: response} for entry, response in zip(entries, responses)]
    temporary = f"{os.fspath(path)}.tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(with_responses, file, indent=4)  # "indent" for pretty-printing, as the book
    os.replace(temporary, path)
    return with_responses
