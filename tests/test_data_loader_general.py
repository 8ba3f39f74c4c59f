"""The general DataLoader of issue 12: any Dataset, default_collate, collate_fn, the default generator."""

import functools
from collections import namedtuple

import numpy as np
import pytest

import autograd
from autograd import Tensor
from minigpt.data import DataLoader, Dataset, GPTDataset, default_collate


class TensorPairs(Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, index):
        return autograd.tensor([float(index), -float(index)]), autograd.tensor(index)


def test_tensor_items_give_tensor_batches_never_object_arrays():
    x, y = next(iter(DataLoader(TensorPairs(), batch_size=3)))
    assert isinstance(x, Tensor) and x.dtype == np.float32 and x.shape == (3, 2) and not x.requires_grad
    assert isinstance(y, Tensor) and y.dtype == np.int64 and y.tolist() == [0, 1, 2]


def test_default_collate_by_type():
    Pair = namedtuple("Pair", "a b")
    batch = default_collate([{"ids": np.arange(3), "label": 1, "score": 0.5, "text": "x", "pair": Pair(1, 2.0)},
                             {"ids": np.arange(3) + 1, "label": 0, "score": 1.5, "text": "y", "pair": Pair(3, 4.0)}])
    assert batch["ids"].tolist() == [[0, 1, 2], [1, 2, 3]]
    assert batch["label"].dtype == np.int64 and batch["score"].dtype == np.float32
    assert batch["text"] == ["x", "y"]
    assert isinstance(batch["pair"], Pair) and batch["pair"].b.tolist() == [2.0, 4.0]
    assert default_collate([True, False]).dtype == bool
    with pytest.raises(ValueError, match="different shapes.*collate_fn"):
        default_collate([np.arange(2), np.arange(3)])
    with pytest.raises(TypeError, match="cannot batch items of type object"):
        default_collate([object()])
    with pytest.raises(ValueError, match="empty"):
        default_collate([])


def pad_collate(batch, pad_token_id=0):
    """Chapter 7's pattern: a collate_fn bound with functools.partial pads to the longest item."""
    longest = max(len(item) for item in batch)
    return np.stack([np.pad(np.asarray(item), (0, longest - len(item)), constant_values=pad_token_id) for item in batch])


class Ragged(Dataset):
    items = [[1, 2, 3], [4], [5, 6]]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def test_collate_fn_builds_the_batch():
    loader = DataLoader(Ragged(), batch_size=3, collate_fn=functools.partial(pad_collate, pad_token_id=50256))
    assert next(iter(loader)).tolist() == [[1, 2, 3], [4, 50256, 50256], [5, 6, 50256]]
    with pytest.raises(TypeError, match="collate_fn"):
        DataLoader(Ragged(), collate_fn="pad")
    # A collate_fn replaces GPTDataset's fast path too.
    dataset = GPTDataset(np.arange(20), None, max_length=4, stride=4)
    batch = next(iter(DataLoader(dataset, batch_size=2, collate_fn=lambda items: len(items))))
    assert batch == 2


def test_shuffling_without_a_seed_follows_manual_seed():
    dataset = GPTDataset(np.arange(200), None, max_length=4, stride=4)

    def first_column(loader):
        return np.concatenate([inputs[:, 0] for inputs, _ in loader])

    autograd.manual_seed(123)
    order = first_column(DataLoader(dataset, batch_size=5, shuffle=True))
    autograd.manual_seed(123)
    assert np.array_equal(first_column(DataLoader(dataset, batch_size=5, shuffle=True)), order)
    assert not np.array_equal(order, np.sort(order))
    state = autograd.get_rng_state()
    DataLoader(dataset, batch_size=5, shuffle=True)
    np.testing.assert_array_equal(autograd.get_rng_state(), state)  # making a loader draws nothing (as PyTorch)


def test_dataset_base_class_and_num_workers():
    with pytest.raises(NotImplementedError, match="__getitem__"):
        Dataset()[0]
    with pytest.raises(NotImplementedError, match="__len__"):
        len(Dataset())
    assert DataLoader(Ragged(), num_workers=2).num_workers == 2  # accepted; loading stays in-process
    with pytest.raises(ValueError, match="num_workers: expected an integer >= 0"):
        DataLoader(Ragged(), num_workers=-1)
