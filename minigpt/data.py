"""Data: token ids -> sliding windows -> shuffled batches, and token files for large corpora.

What this file adds: the input pipeline of book chapter 2.6, and torch.utils.data's `Dataset` and
`DataLoader` for the book's other datasets (appendix A's ToyDataset, chapter 6's SpamDataset,
chapter 7's InstructionDataset with its `collate_fn`). A text is tokenized once into a flat
array of token ids; `GPTDataset` cuts it into windows of `max_length` tokens, `stride` apart, each
paired with the same window shifted one token to the right (the next-token targets); `DataLoader`
groups the items of any dataset into batches in a seeded random order (`default_collate` stacks
them, or the caller's `collate_fn` builds the batch); `create_dataloader` wires the two together
as the book's `create_dataloader_v1` does.

Where it differs from the book: the book's `GPTDatasetV1` stores every window as its own tensor,
which multiplies memory by max_length / stride. Here the ids stay one flat array (possibly a
memory map of a file larger than memory) and window i is computed when asked for:

    input_ids  = ids[i * stride     : i * stride + max_length]
    target_ids = ids[i * stride + 1 : i * stride + max_length + 1]

A batch is gathered with one fancy index over a strided view of the flat array, no Python loop.

For corpora too large to tokenize at every start, `prepare` writes the ids once to a flat
little-endian uint16 file with a JSON sidecar, and `load_tokens` memory-maps it.

Shape letters: B batch size, T tokens per window (max_length).

References: book chapter 2.6, listings 2.5 (GPTDatasetV1) and 2.6 (create_dataloader_v1);
chapter 5.1.3 (the 90/10 train/validation split); appendix A.6 (Dataset, DataLoader); PyTorch
torch.utils.data.Dataset, DataLoader and default_collate.
"""

from __future__ import annotations

import inspect
import json
import math
import numbers
import os
from pathlib import Path

import numpy as np

from autograd import Tensor
from autograd.random import Generator, default_generator, permutation, random_bits, resolve_generator

# The special token the book lets through when encoding (chapter 2.6: allowed_special).
ALLOWED_SPECIAL = {"<|endoftext|>"}

# Format name and version written into the sidecar of a token file by `prepare`.
TOKEN_FILE_FORMAT = "minigpt-tokens"
TOKEN_FILE_VERSION = 1


def _check_int(name: str, value, *, low: int) -> int:
    """Return `value` as a Python int, or raise ValueError naming `name`, the bound and the value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name}: expected an integer >= {low}, received {value!r}")
    return int(value)


def _encode(tokenizer, text: str) -> list[int]:
    """Encode `text` letting "<|endoftext|>" through, as the book does.

    A tokenizer whose `encode` takes no `allowed_special` (a character-level one, say) is called
    with the text alone.
    """
    if tokenizer is None or not callable(getattr(tokenizer, "encode", None)):
        raise ValueError(
            f"tokenizer: expected an object with an encode(text) method to tokenize a str, received {tokenizer!r}"
        )
    parameters = inspect.signature(tokenizer.encode).parameters
    takes_keywords = any(parameter.kind is inspect.Parameter.VAR_KEYWORD for parameter in parameters.values())
    if "allowed_special" in parameters or takes_keywords:
        return tokenizer.encode(text, allowed_special=ALLOWED_SPECIAL)
    return tokenizer.encode(text)


def _as_token_array(ids, name: str) -> np.ndarray:
    """Return `ids` as a 1-D integer array without copying arrays and memory maps.

    Raises:
        ValueError: `ids` is not 1-D, not of an integer dtype, or (in memory) holds a negative id.
    """
    array = ids if isinstance(ids, np.ndarray) else np.asarray(ids)
    if array.ndim != 1:
        raise ValueError(
            f"{name}: expected a str or a 1-D array of token ids, received an array of shape {array.shape}"
        )
    if array.dtype.kind not in "iu":
        if array.size == 0:
            return array.astype(np.int64)
        raise ValueError(f"{name}: expected integer token ids, received dtype {array.dtype}")
    # A memory-mapped corpus is not scanned (that would read the whole file); `prepare` wrote it
    # from a tokenizer's output and the embedding layer checks the range of each batch anyway.
    if array.dtype.kind == "i" and not isinstance(array, np.memmap) and array.size and array.min() < 0:
        raise ValueError(f"{name}: expected token ids >= 0, received {int(array.min())}")
    return array


class Dataset:
    """Base class of a map-style dataset: `len(dataset)` items, `dataset[i]` the i-th (torch.utils.data.Dataset).

    Subclass it and write `__len__` and `__getitem__`, as the book's `GPTDatasetV1` (ch. 2.6),
    `ToyDataset` (appendix A.6), `SpamDataset` (ch. 6.3) and `InstructionDataset` (ch. 7.3) do.
    `DataLoader` needs nothing else (any object with these two methods works); a dataset that can
    gather several items at once may add `get_batch(indices)`, which the loader then uses.

    Raises:
        NotImplementedError: from `__len__` / `__getitem__` when the subclass does not define them.

    References: torch.utils.data.Dataset.
    """

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(self, index)")

    def __len__(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} must define __len__(self)")


class Subset(Dataset):
    """The items of `dataset` at `indices`, in that order (torch.utils.data.Subset).

    Attributes: dataset, indices (a list of ints).
    """

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = list(indices)

    def __getitem__(self, index):
        if isinstance(index, list):
            return [self.dataset[self.indices[i]] for i in index]
        return self.dataset[self.indices[index]]

    def __len__(self) -> int:
        return len(self.indices)


def random_split(dataset, lengths, generator=None) -> list:
    """Split `dataset` into non-overlapping `Subset`s of the given lengths, at random (torch.utils.data.random_split).

    The order is `randperm(len(dataset), generator=generator)`, PyTorch's CPU permutation, so
    `random_split(data, [3, 7], generator=torch.Generator().manual_seed(42))` gives PyTorch's split.

    Args:
        dataset: anything with `__len__` and `__getitem__`.
        lengths: ints summing to len(dataset), or fractions summing to 1 (each split gets
            floor(len * fraction) items; the remainder goes one by one to the first splits).
        generator: an `autograd.Generator` (or int seed / np.random.Generator); None: the
            default generator.

    Returns:
        A list of `Subset`, one per length.

    Raises:
        ValueError: a fraction outside [0, 1], or lengths that do not sum to len(dataset).
    """
    lengths = list(lengths)
    total = len(dataset)
    if math.isclose(sum(lengths), 1) and sum(lengths) <= 1:
        for number, fraction in enumerate(lengths):
            if not 0 <= fraction <= 1:
                raise ValueError(f"random_split: the fraction at index {number} must be in [0, 1], got {fraction}")
        counts = [math.floor(total * fraction) for fraction in lengths]
        for number in range(total - sum(counts)):
            counts[number % len(counts)] += 1
        lengths = counts
    if sum(lengths) != total:
        raise ValueError(f"random_split: the lengths must sum to len(dataset) = {total}, got {lengths} (sum {sum(lengths)})")
    indices = permutation(resolve_generator(generator), total).tolist()
    subsets, offset = [], 0
    for length in lengths:
        subsets.append(Subset(dataset, indices[offset:offset + length]))
        offset += length
    return subsets


def default_collate(batch: list):
    """Stack a list of dataset items into one batch, as torch.utils.data.default_collate.

    Items are combined by their type, recursively:
        Tensor           -> a Tensor stacked along a new first axis (no gradient)
        np.ndarray       -> an np.ndarray stacked along a new first axis
        int, float, bool -> a 1-D np.ndarray (int64, float32 as minigpt's tensors, bool)
        tuple / list     -> a list, each position collated (a namedtuple stays one)
        dict             -> a dict, each key collated
        str              -> the list of strings
    A batch is never an object array: items of different shapes are an error.

    Args:
        batch: a non-empty list of items of one structure (`[dataset[i] for i in indices]`).

    Returns:
        The batch, e.g. (inputs (B, T), targets (B, T)) for a dataset of (inputs, targets) pairs.

    Raises:
        ValueError: items of different shapes or lengths (pad them in a `collate_fn`, as chapters
            6 and 7 do), or an empty batch.
        TypeError: an item of a type that cannot be stacked.

    References: torch.utils.data.default_collate.
    """
    if not batch:
        raise ValueError("default_collate: the batch is empty")
    first = batch[0]
    if isinstance(first, Tensor):
        return Tensor(_stack([item.data for item in batch], "Tensor"))
    if isinstance(first, np.ndarray):
        return _stack(batch, "array")
    if isinstance(first, (bool, np.bool_)):
        return np.asarray(batch, dtype=bool)
    if isinstance(first, numbers.Integral):
        return np.asarray(batch, dtype=np.int64)
    if isinstance(first, numbers.Real):
        return np.asarray(batch, dtype=np.float32)
    if isinstance(first, str):
        return list(batch)
    if isinstance(first, dict):
        return {key: default_collate([item[key] for item in batch]) for key in first}
    if isinstance(first, (tuple, list)):
        lengths = {len(item) for item in batch}
        if len(lengths) != 1:
            raise ValueError(f"default_collate: items are sequences of different lengths {sorted(lengths)}")
        columns = [default_collate(list(column)) for column in zip(*batch)]
        if isinstance(first, tuple) and hasattr(first, "_fields"):  # a namedtuple
            return type(first)(*columns)
        return columns  # a list for tuples too, as PyTorch: the book prints `[tensor(...), tensor(...)]`
    raise TypeError(f"default_collate: cannot batch items of type {type(first).__name__}; pass a collate_fn")


def _stack(arrays: list, kind: str) -> np.ndarray:
    shapes = {np.shape(array) for array in arrays}
    if len(shapes) != 1:
        raise ValueError(
            f"default_collate: cannot stack {kind} items of different shapes {sorted(shapes)}; "
            "pad them to one length in a collate_fn (as the book's chapters 6 and 7 do)"
        )
    stacked = np.stack(arrays)
    if stacked.dtype == object:
        raise TypeError(f"default_collate: {kind} items of object dtype cannot be batched")
    return stacked


class GPTDataset(Dataset):
    """The book's sliding-window dataset over one flat array of token ids.

    Window i covers ids[i * stride : i * stride + max_length] (the inputs); its targets are the
    same span shifted by one token. Windows are counted as the book's loop
    `for i in range(0, len(token_ids) - max_length, stride)` counts them:
    ceil((N - max_length) / stride) windows for N tokens, so the last target token is always
    inside the text; tokens after the last full window are not used.

    Args:
        text_or_ids: a str (tokenized with `tokenizer.encode(text, allowed_special={"<|endoftext|>"})`),
            or a 1-D integer array, list or np.memmap of token ids (kept as is, not copied).
        tokenizer: anything with `.encode`; needed only for a str (e.g.
            `minigpt.tokenizer.get_encoding("gpt2")`), may be None for ids.
        max_length: tokens per window (T, the context length trained on), >= 1.
        stride: tokens between the starts of consecutive windows, >= 1 (stride == max_length:
            windows do not overlap, as the book's chapter-5 loaders).

    Attributes:
        token_ids: the flat array of ids (int64 when tokenized here, the file's dtype for a memmap).

    Raises:
        ValueError: max_length < 1, stride < 1, ids that are not 1-D integers, a str without a
            tokenizer, or fewer than max_length + 1 tokens (the message says how many are missing).

    References: book listing 2.5 (GPTDatasetV1).
    """

    def __init__(self, text_or_ids, tokenizer, max_length: int, stride: int):
        self.max_length = _check_int("max_length", max_length, low=1)
        self.stride = _check_int("stride", stride, low=1)
        if isinstance(text_or_ids, str):
            self.token_ids = np.asarray(_encode(tokenizer, text_or_ids), dtype=np.int64)
        else:
            self.token_ids = _as_token_array(text_or_ids, "text_or_ids")
        needed = self.max_length + 1  # one window of inputs plus the one-token shift of its targets
        if len(self.token_ids) < needed:
            raise ValueError(
                f"text_or_ids: has {len(self.token_ids)} tokens, but one window needs max_length + 1 = "
                f"{needed}: {needed - len(self.token_ids)} tokens short (use a longer text or a smaller max_length)"
            )
        # Row i of this (num_windows, max_length + 1) strided view is window i with its extra
        # target token: a view, no copy, so a batch is one fancy index over it.
        self._windows = np.lib.stride_tricks.sliding_window_view(self.token_ids, needed)[:: self.stride]

    def __len__(self) -> int:
        return len(self._windows)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (input_ids, target_ids) of window `index`: two int64 arrays of shape (max_length,).

        Raises:
            IndexError: `index` outside [-len(self), len(self)).
        """
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"index: expected an integer, received {index!r}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index: expected -{len(self)} <= index < {len(self)}, received {index}")
        window = self._windows[index].astype(np.int64)  # (T + 1,)
        return window[:-1].copy(), window[1:].copy()

    def get_batch(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Return the windows at `indices` as (inputs, targets), two int64 arrays of shape (B, T).

        One fancy index gathers all windows at once; for a memory map it reads just those pages.
        """
        windows = self._windows[np.asarray(indices, dtype=np.intp)]  # (B, T + 1)
        windows = windows.astype(np.int64, copy=False)
        return np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])


class DataLoader:
    """Batches of a dataset in a seeded random order; iterating again starts the next epoch.

    Each `iter(loader)` is one epoch, drawn as PyTorch's DataLoader and RandomSampler draw it:
    every `iter()` takes one int64 (`_base_seed`) from the loader's generator (or the default
    one); with `shuffle`, the epoch's order is `randperm(len(dataset))` from a fresh generator
    seeded by a second int64 from the default generator (no `generator` given), or from the
    loader's generator itself (which then draws one more permutation when the epoch runs out).
    So after the book's `torch.manual_seed(123)` the batches come in the book's order.
    `state_dict()` records the generator, the epoch and how many batches of the current epoch
    were handed out; after `load_state_dict()` the next iteration resumes that epoch at the next
    batch, so a resumed training run sees exactly the batches the uninterrupted run would.

    Args:
        dataset: any object with `__len__` and `__getitem__` (a `Dataset`); one with a
            `get_batch(indices)` method (`GPTDataset`) is batched by it in one call when no
            `collate_fn` is given.
        batch_size: items per batch (B), >= 1.
        shuffle: draw a new random order every epoch (True for training, False for validation).
        drop_last: drop the last batch when it would be smaller than batch_size. With
            drop_last=False the last batch holds the remaining len(dataset) % batch_size items.
        num_workers: accepted for the book's calls (>= 0); minigpt always loads in the main
            process (items are cheap NumPy slices), so it changes nothing.
        collate_fn: builds a batch from the list of items `[dataset[i] for i in indices]`
            (chapters 6 and 7 pass `functools.partial(custom_collate_fn, ...)` to pad);
            default `default_collate`.
        seed: minigpt's shortcut for `generator=Generator().manual_seed(seed)` (the CLI's
            `--seed`). None (default): PyTorch's behaviour, above.
        generator: the loader's `autograd.Generator` (torch's `DataLoader(generator=...)`); None
            draws from the default generator at each epoch.
        pin_memory: accepted as PyTorch's; ignored (on the CPU there is nothing to pin).

    Yields:
        What `collate_fn` returns; by default, for (inputs, targets) items, two arrays of shape
        (B, ...) (Tensors if the items are Tensors, NumPy arrays otherwise).

    Raises:
        ValueError: batch_size < 1, num_workers < 0, or drop_last=True with fewer items than
            batch_size (no batch at all; the message says how many items are missing).
        TypeError: collate_fn is not callable.

    References: PyTorch torch.utils.data.DataLoader; book listing 2.6 and appendix A.6.
    """

    def __init__(
        self,
        dataset,
        batch_size: int = 1,
        shuffle: bool = False,
        drop_last: bool = False,
        num_workers: int = 0,
        collate_fn=None,
        seed: int | None = None,
        pin_memory: bool = False,
        generator=None,
    ):
        self.dataset = dataset
        self.batch_size = _check_int("batch_size", batch_size, low=1)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.num_workers = _check_int("num_workers", num_workers, low=0)
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(f"collate_fn: expected a callable or None, received {type(collate_fn).__name__}")
        self.collate_fn = collate_fn
        if generator is not None and not isinstance(generator, Generator):
            raise TypeError(f"generator: expected an autograd.Generator or None, received {type(generator).__name__}")
        if seed is not None:
            generator = resolve_generator(int(seed))
        self.seed = seed
        self.generator = generator
        if self.drop_last and len(dataset) < self.batch_size:
            raise ValueError(
                f"dataset: has {len(dataset)} windows, fewer than batch_size={self.batch_size} with "
                f"drop_last=True, so no batch would be made ({self.batch_size - len(dataset)} windows short); "
                "use a smaller batch_size, a smaller stride or max_length, or drop_last=False"
            )
        self.epoch = 0  # epochs started so far
        self._batches_done = 0  # batches of the current epoch handed out
        self._epoch_start_state = None  # the permutation generator's state before this epoch's draw
        self._resume = False  # set by load_state_dict when it stopped mid-epoch

    def __len__(self) -> int:
        """Batches per epoch: len(dataset) // batch_size, plus one partial batch unless drop_last."""
        if self.drop_last:
            return len(self.dataset) // self.batch_size
        return math.ceil(len(self.dataset) / self.batch_size)

    def __iter__(self):
        count = len(self.dataset)
        if self._resume:
            # Redraw the interrupted epoch's order from the generator state it started from.
            self._resume = False
            first = self._batches_done
            order = self._order(count, Generator().set_state(self._epoch_start_state)) if self.shuffle else np.arange(count)
            return self._batches(order, first, self.generator if self.shuffle else None)
        # PyTorch's _BaseDataLoaderIter takes a base seed (for worker processes) at every iter().
        random_bits(self.generator if self.generator is not None else default_generator, (), np.int64)
        self.epoch += 1
        if not self.shuffle:
            return self._batches(np.arange(count), 0, None)
        if self.generator is None:  # RandomSampler: a fresh generator seeded from the default one
            sampler_generator = Generator().manual_seed(int(random_bits(default_generator, (), np.int64)))
        else:
            sampler_generator = self.generator
        self._epoch_start_state = sampler_generator.get_state()
        return self._batches(self._order(count, sampler_generator), 0, self.generator)

    @staticmethod
    def _order(count: int, generator) -> np.ndarray:
        return permutation(generator, count)  # torch.randperm(count, generator=generator)

    def _batches(self, order: np.ndarray, first: int, generator):
        for number in range(first, len(self)):
            indices = order[number * self.batch_size:(number + 1) * self.batch_size]
            # Counted before handing the batch out: a checkpoint taken while the caller trains on
            # this batch resumes with the next one.
            self._batches_done = number + 1
            if generator is not None and number == len(self) - 1:
                # PyTorch's RandomSampler with a generator draws one more permutation when the
                # epoch runs out (its `yield from randperm(n)[:0]`). Drawn here, with the last
                # batch, so that a checkpoint taken now already holds it; nothing else draws from
                # the loader's generator in between.
                permutation(generator, len(order))
            yield self._batch(indices)

    def _batch(self, indices: np.ndarray):
        if self.collate_fn is None and hasattr(self.dataset, "get_batch"):
            return self.dataset.get_batch(indices)  # the fast path: one gather, no Python loop
        items = [self.dataset[int(index)] for index in indices]
        return (self.collate_fn or default_collate)(items)

    def state_dict(self) -> dict:
        """Return the loader's position as a JSON-able dict (generator states as hex, epoch, batch)."""
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "batches_done": self._batches_done,
            "generator_state": None if self.generator is None else _hex_state(self.generator),
            "epoch_start_generator_state": None if self._epoch_start_state is None else self._epoch_start_state.tobytes().hex(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a position saved by `state_dict()`: the next iteration continues from it.

        If the saved epoch was interrupted, the next `iter()` yields its remaining batches in the
        same order; if it was complete, the next `iter()` starts the following epoch.
        """
        if isinstance(state.get("generator_state"), dict):
            raise ValueError("load_state_dict: this loader state holds a NumPy PCG64 generator, from before minigpt drew "
                             "PyTorch's random streams; its batch order cannot be restored: start the run again")
        self.epoch = int(state["epoch"])
        self._batches_done = int(state["batches_done"])
        if state.get("generator_state") is not None and self.generator is not None:
            self.generator.set_state(_state_from_hex(state["generator_state"]))
        start = state.get("epoch_start_generator_state")
        self._epoch_start_state = None if start is None else _state_from_hex(start)
        self._resume = self.epoch > 0 and self._batches_done < len(self)


def _hex_state(generator: Generator) -> str:
    return generator.get_state().tobytes().hex()


def _state_from_hex(text: str) -> np.ndarray:
    return np.frombuffer(bytes.fromhex(text), dtype=np.uint8).copy()


def create_dataloader(
    text,
    batch_size: int = 4,
    max_length: int = 256,
    stride: int = 128,
    shuffle: bool = True,
    drop_last: bool = True,
    num_workers: int = 0,
    seed: int | None = None,
    tokenizer=None,
) -> DataLoader:
    """Tokenize `text` and return a `DataLoader` over its sliding windows (book listing 2.6).

    Args:
        text: the training text (a str), or token ids (a 1-D integer array or memmap).
        batch_size: windows per batch (B), >= 1.
        max_length: tokens per window (T), >= 1.
        stride: tokens between window starts, >= 1.
        shuffle: a new random window order every epoch.
        drop_last: drop a last batch smaller than batch_size (the book drops it when training).
        num_workers: accepted as the book passes it; loading runs in the main process.
        seed: seed of the loader's own shuffling generator; None (default): PyTorch's
            DataLoader, drawing each epoch's order from the default generator, so the book's
            torch.manual_seed(123) before training gives the book's batch order.
        tokenizer: anything with `.encode`; default `minigpt.tokenizer.get_encoding("gpt2")`,
            as the book's `tiktoken.get_encoding("gpt2")`.

    Returns:
        A DataLoader yielding (inputs, targets), int64 arrays of shape (batch_size, max_length).

    Raises:
        ValueError: as `GPTDataset` and `DataLoader` (too short a text, stride < 1, ...).

    References: book listing 2.6 (create_dataloader_v1).
    """
    if tokenizer is None and isinstance(text, str):
        from minigpt.tokenizer import get_encoding  # imported here: only a str needs a tokenizer

        tokenizer = get_encoding("gpt2")
    dataset = GPTDataset(text, tokenizer, max_length, stride)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, num_workers=num_workers, seed=seed)


def train_val_split(ids_or_text, train_ratio: float = 0.9, *, max_length: int | None = None, tokenizer=None):
    """Split a text or an id array in two at `int(train_ratio * len)`, as the book does.

    The book splits the raw text by characters (chapter 5.1.3: `split_idx = int(train_ratio *
    len(text_data))`); an id array is split by tokens the same way. Both parts are slices (a
    memory map stays a memory map).

    Args:
        ids_or_text: a str, or a 1-D array of token ids.
        train_ratio: the training part's share, strictly between 0 and 1.
        max_length: if given, check that each part holds at least one window (max_length + 1
            tokens), to fail here with a clear message rather than later in `GPTDataset`.
        tokenizer: needed with `max_length` for a str, to count the tokens of each part.

    Returns:
        (train_part, validation_part), of the input's type.

    Raises:
        ValueError: train_ratio outside (0, 1); a part too short for one window (the message says
            by how many tokens and the largest train_ratio that would fit).
    """
    if isinstance(train_ratio, bool) or not isinstance(train_ratio, numbers.Real) or not 0 < train_ratio < 1:
        raise ValueError(f"train_ratio: expected a number strictly between 0 and 1, received {train_ratio!r}")
    if not isinstance(ids_or_text, str):
        ids_or_text = _as_token_array(ids_or_text, "ids_or_text")
    split_index = int(train_ratio * len(ids_or_text))
    train_part, validation_part = ids_or_text[:split_index], ids_or_text[split_index:]
    if max_length is not None:
        needed = _check_int("max_length", max_length, low=1) + 1
        for name, part in [("training", train_part), ("validation", validation_part)]:
            count = len(_encode(tokenizer, part)) if isinstance(part, str) else len(part)
            if count < needed:
                hint = ""
                if not isinstance(part, str) and len(ids_or_text) >= 2 * needed:
                    bound = (len(ids_or_text) - needed) / len(ids_or_text)
                    hint = f" (train_ratio <= {bound:.4f} would fit)" if name == "validation" else (
                        f" (train_ratio >= {needed / len(ids_or_text):.4f} would fit)"
                    )
                raise ValueError(
                    f"train_ratio: the {name} split (train_ratio={train_ratio}) has {count} tokens, but one "
                    f"window needs max_length + 1 = {needed}: {needed - count} tokens short{hint}"
                )
    return train_part, validation_part


# ------------------------------------------------------------------------------------------------
# Token files for corpora larger than memory.
# ------------------------------------------------------------------------------------------------


def _sidecar_path(path) -> Path:
    """The JSON sidecar of a token file: the file's name with ".json" appended."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def _split_at_line_end(text: str) -> tuple[str, str]:
    """Split `text` into (head, tail) where BPE pre-tokenization cannot cross the cut.

    The cut goes before the trailing whitespace, so head ends with a non-whitespace character and
    tail starts with whitespace (the last line break and anything after it). No pattern of GPT-2's
    pre-tokenizer regex spans a non-whitespace character followed by a whitespace character, so
    tokenizing head and tail separately gives the ids of tokenizing them together; cutting *after*
    the line break would not (GPT-2 has one token for "\\n\\n", and a run of whitespace
    is split differently at the end of a string than before a word).

    Example: "one\\ntwo \\n\\n" -> ("one\\ntwo", " \\n\\n").

    Returns ("", text) when no safe cut exists (the text is all whitespace, or its trailing
    whitespace contains U+001C..U+001F, which Python strips but the regex `\\s` does not match).
    """
    head = text.rstrip()
    tail = text[len(head):]
    if not head or any(character in tail for character in "\x1c\x1d\x1e\x1f"):
        return "", text
    return head, tail


def prepare(
    input_path,
    output_path,
    tokenizer,
    chunk_size: int = 1 << 22,
    *,
    progress: bool = True,
) -> dict:
    """Tokenize a UTF-8 text file once into a flat token file that `load_tokens` memory-maps.

    The file is read in chunks of about `chunk_size` bytes, each cut at a line end (see
    `_split_at_line_end`) so that the ids equal those of tokenizing the whole file at once, and
    never more than a few chunks are in memory: a file larger than memory works. The ids go to
    `output_path` as raw little-endian uint16 (uint32 when the tokenizer's `n_vocab` exceeds
    65,536), and a sidecar `output_path + ".json"` records the dtype, token count, tokenizer name
    and source. Both are written to temporary files and renamed into place, the token file first
    and the sidecar last (after removing any old sidecar), so an interrupted prepare leaves
    either the previous complete pair or no sidecar, never a half file that loads.

    Args:
        input_path: the UTF-8 text file.
        output_path: the token file to write (e.g. "data/tinyshakespeare.bin").
        tokenizer: anything with `.encode`; its `.name` and `.n_vocab`, when present, go to the
            sidecar and choose the dtype.
        chunk_size: bytes read per chunk, >= 1. A chunk grows until it holds a line end after a
            non-whitespace character, so a file without line breaks is read whole.
        progress: show a tqdm progress bar over the bytes read.

    Returns:
        The sidecar's contents (a dict).

    Raises:
        ValueError: chunk_size < 1; the input is not UTF-8; one of the files prepare
            writes (the output, its sidecar, or their temporary files) is the input file under
            another name (checked before anything is written); an id does not fit the dtype (a
            tokenizer without `n_vocab` producing an id > 65,535), or is negative.
        FileNotFoundError: input_path does not exist.
    """
    chunk_size = _check_int("chunk_size", chunk_size, low=1)
    input_path, output_path = Path(input_path), Path(output_path)
    source_bytes = input_path.stat().st_size
    n_vocab = getattr(tokenizer, "n_vocab", None)
    dtype = np.dtype("<u4") if isinstance(n_vocab, numbers.Integral) and n_vocab > 1 << 16 else np.dtype("<u2")
    largest = np.iinfo(dtype).max
    sidecar = _sidecar_path(output_path)
    temporary = output_path.with_name(output_path.name + ".tmp")
    temporary_sidecar = sidecar.with_name(sidecar.name + ".tmp")
    _check_not_the_input(input_path, output_path, (output_path, sidecar, temporary, temporary_sidecar))

    from tqdm import tqdm  # imported here: only prepare shows a progress bar

    token_count = 0
    quiet = {"disable": None if progress else True}  # None: no bar when stderr is not a terminal (a log)
    bar = tqdm(total=source_bytes, unit="B", unit_scale=True, desc=f"tokenizing {input_path.name}", **quiet)

    def write(text: str, out) -> None:
        nonlocal token_count
        ids = np.asarray(_encode(tokenizer, text), dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() > largest):
            bad = int(ids.min()) if ids.min() < 0 else int(ids.max())
            raise ValueError(
                f"tokenizer: produced token id {bad}, outside the {dtype.name} range 0..{largest} of the "
                "token file; give the tokenizer an n_vocab attribute above 65536 to write uint32"
            )
        out.write(ids.astype(dtype).tobytes())
        token_count += ids.size

    try:
        with open(input_path, "rb") as source, open(temporary, "wb") as out:
            pending = b""  # bytes read but not tokenized yet: the tail of the previous chunk
            while True:
                block = source.read(chunk_size)
                bar.update(len(block))
                pending += block
                if not block:
                    break
                cut = pending.rfind(b"\n")  # everything up to a line break is whole UTF-8 characters
                if cut < 0:
                    continue
                try:
                    text = pending[:cut + 1].decode("utf-8")
                except UnicodeDecodeError as error:
                    raise ValueError(f"input_path: {input_path} is not valid UTF-8 ({error})") from None
                head, tail = _split_at_line_end(text)
                if head:
                    write(head, out)
                    pending = tail.encode("utf-8") + pending[cut + 1:]
            try:
                rest = pending.decode("utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"input_path: {input_path} is not valid UTF-8 ({error})") from None
            if rest:
                write(rest, out)
            out.flush()
            os.fsync(out.fileno())
        info = {
            "format": TOKEN_FILE_FORMAT,
            "version": TOKEN_FILE_VERSION,
            "dtype": dtype.name,
            "byte_order": "little",
            "token_count": token_count,
            "tokenizer": getattr(tokenizer, "name", type(tokenizer).__name__),
            "n_vocab": int(n_vocab) if isinstance(n_vocab, numbers.Integral) else None,
            "source": str(input_path),
            "source_bytes": source_bytes,
        }
        _write_json_synced(temporary_sidecar, info)
        # Order matters: without a sidecar the token file does not load, so remove the old
        # sidecar, put the new tokens in place, and only then the new sidecar.
        sidecar.unlink(missing_ok=True)
        os.replace(temporary, output_path)
        os.replace(temporary_sidecar, sidecar)
    finally:
        bar.close()
        temporary.unlink(missing_ok=True)
        temporary_sidecar.unlink(missing_ok=True)
    return info


def _check_not_the_input(input_path: Path, output_path: Path, written: tuple) -> None:
    """Raise ValueError if any path `prepare` writes is the input file under another name (checked
    before anything is written: writing it would destroy the text)."""
    for path in written:
        # samefile sees through symbolic and hard links, relative paths and case-folding file systems.
        if path.exists() and os.path.samefile(path, input_path):
            what = "the output" if path == output_path else f"{path.name}, which prepare writes,"
            raise ValueError(f"output_path: {what} is the input file {input_path} under another name; "
                             "writing it would destroy the text: choose another output name")


def _write_json_synced(path: Path, info: dict) -> None:
    """Write `info` as indented JSON to `path` and fsync it (before it is renamed into place)."""
    with open(path, "w", encoding="utf-8") as out:
        json.dump(info, out, indent=2)
        out.flush()
        os.fsync(out.fileno())


def token_file_info(path) -> dict:
    """Return the sidecar of a token file written by `prepare` (dtype, token_count, tokenizer, ...).

    Raises:
        FileNotFoundError: the sidecar is missing (the file was not written by a completed prepare).
        ValueError: the sidecar is not valid JSON or not a minigpt token-file sidecar (the
            message names the sidecar file).
    """
    sidecar = _sidecar_path(path)
    if not sidecar.exists():
        raise FileNotFoundError(
            f"path: {path} has no sidecar {sidecar.name}; it was not written by a completed prepare, run prepare again"
        )
    try:
        with open(sidecar, encoding="utf-8") as source:
            info = json.load(source)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"path: the sidecar {sidecar} of the token file is not valid JSON ({error}); "
                         "it is damaged: run prepare again") from None
    if not isinstance(info, dict):
        raise ValueError(f"path: the sidecar {sidecar} of the token file holds a {type(info).__name__}, not a JSON object; run prepare again")
    if info.get("format") != TOKEN_FILE_FORMAT or info.get("version") != TOKEN_FILE_VERSION:
        raise ValueError(
            f"path: {sidecar} is not a {TOKEN_FILE_FORMAT} version {TOKEN_FILE_VERSION} sidecar, "
            f"received format {info.get('format')!r} version {info.get('version')!r}"
        )
    return info


def load_tokens(path) -> np.ndarray:
    """Memory-map a token file written by `prepare`: a read-only 1-D array of its ids.

    Nothing is read until windows are indexed, so a corpus larger than memory trains; pass the
    result to `GPTDataset` (or `train_val_split`) as the ids.

    Returns:
        A read-only np.memmap of dtype uint16 (or uint32) and shape (token_count,); an empty
        array for a file with no tokens.

    Raises:
        FileNotFoundError: the file or its sidecar is missing.
        ValueError: the file's size disagrees with the sidecar's token count (a damaged file).
    """
    info = token_file_info(path)
    dtype = np.dtype(info["dtype"]).newbyteorder("<")
    expected = info["token_count"] * dtype.itemsize
    actual = os.path.getsize(path)
    if actual != expected:
        raise ValueError(
            f"path: {path} has {actual} bytes, but its sidecar records {info['token_count']} tokens of "
            f"{dtype.name} = {expected} bytes; the file is damaged, run prepare again"
        )
    if info["token_count"] == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(info["token_count"],))
