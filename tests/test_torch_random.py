"""minigpt's random draws against PyTorch 2.13's CPU generator (golden values in tests/fixtures/torch_random).

The fixtures were written once by scripts/make_torch_random_fixtures.py under torch 2.13.0 (CPU).
Draws PyTorch computes with integer or IEEE operations are compared bit for bit (a SHA-256 of
their bytes); float32 normals of 16+ elements, which PyTorch computes with SIMD approximations
of log / sin / cos on x86, within 2e-6 (relative to the standard deviation).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

import autograd as torch
import autograd.functional as F
from autograd.random import Generator
from minigpt import nn  # noqa: F401 - torch.utils.data
from minigpt.data import DataLoader, random_split

FIXTURES = Path(__file__).parent / "fixtures" / "torch_random"
EXACT = json.loads((FIXTURES / "exact.json").read_text())
DRAWS = EXACT["draws"]
LOADERS = json.loads((FIXTURES / "loaders.json").read_text())
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def digest(array) -> list:
    array = np.ascontiguousarray(array.data if isinstance(array, torch.Tensor) else array)
    return [hashlib.sha256(array.tobytes()).hexdigest()[:16], array.ravel()[:1].tolist()]


def _weights(seed: int, size: int):
    values = np.abs(np.sin(np.arange(3 * size, dtype=np.float32) + np.float32(seed % 7))) + np.float32(0.01)
    return torch.tensor(values.reshape(3, size))


def _float_draws(name: str, size: int, dtype):
    """The fixture script's draw `name` of `size` elements, after manual_seed (done by the caller)."""
    if name == "rand":
        return torch.rand(size, dtype=dtype)
    if name == "rand_like":
        return torch.rand_like(torch.empty(size, dtype=dtype))
    if name == "uniform_":
        return torch.empty(size, dtype=dtype).uniform_(-0.37, 0.41)
    if name == "randn_scalar_path":
        return torch.randn(min(size, 15), dtype=dtype)
    if name == "randn":
        return torch.randn(size, dtype=dtype)
    if name == "exponential_":
        return torch.empty(size, dtype=dtype).exponential_(1.5)
    if name == "bernoulli_":
        return torch.empty(size, dtype=dtype).bernoulli_(0.3)
    if name == "bernoulli_tensor":
        return torch.bernoulli(torch.from_numpy((np.arange(size) % 64 / 64).astype(np.dtype(dtype))))
    if name == "dropout":
        return F.dropout(torch.arange(size, dtype=dtype) * 0.25 - 2.0, p=0.1, training=True)
    raise KeyError(name)


def _int_draws(name: str, seed: int, size: int):
    weights = _weights(seed, size)
    return {
        "randint": lambda: torch.randint(-5, 17, (size,)),
        "randint_wide": lambda: torch.randint(0, 2**30, (size,)),
        "random_": lambda: torch.empty(size, dtype=torch.int64).random_(),
        "randperm": lambda: torch.randperm(size),
        "multinomial_1": lambda: torch.multinomial(weights, 1),
        "multinomial_1d": lambda: torch.multinomial(weights[0], 1),
        "multinomial_no_replacement": lambda: torch.multinomial(weights, min(size, 5)),
        "multinomial_replacement": lambda: torch.multinomial(weights, 7, replacement=True),
        "multinomial_replacement_1d": lambda: torch.multinomial(torch.tensor(weights.data[0].astype(np.float64)), 7, replacement=True),
    }[name]()


FLOAT_FUNCTIONS = ["rand", "rand_like", "uniform_", "randn_scalar_path", "randn", "exponential_", "bernoulli_", "bernoulli_tensor", "dropout"]
INT_FUNCTIONS = ["randint", "randint_wide", "random_", "randperm", "multinomial_1", "multinomial_1d", "multinomial_no_replacement",
                 "multinomial_replacement", "multinomial_replacement_1d"]


@pytest.mark.parametrize("function", FLOAT_FUNCTIONS + INT_FUNCTIONS)
def test_bit_exact_draws_equal_pytorch(function):
    """Every seed, size 1..40 and 3001, float32 and float64: the same bytes as torch 2.13 (CPU)."""
    wrong, checked = [], 0
    for key, expected in DRAWS.items():
        name, *rest = key.split("/")
        if name != function:
            continue
        seed, size = int(rest[0]), int(rest[1])
        torch.manual_seed(seed)
        got = _float_draws(name, size, DTYPES[rest[2]]) if len(rest) == 3 else _int_draws(name, seed, size)
        checked += 1
        if digest(got) != expected:
            wrong.append(f"{key}: first value {digest(got)[1]} vs torch {expected[1]}")
    assert checked > 0
    assert not wrong, f"{len(wrong)} of {checked} draws differ from PyTorch's, e.g. {wrong[:3]}"


def test_float32_normals_within_rounding_of_pytorch():
    """randn / normal_ of 16+ float32 elements: PyTorch's blocks of 16 and its redrawn tail."""
    expected = np.load(FIXTURES / "normal_float32.npz")
    for key in expected.files:
        name, seed, size = key.split("/")
        torch.manual_seed(int(seed))
        got = torch.randn(int(size))
        if name == "normal_":  # drawn right after the randn of the same size, as the script did
            got = torch.empty(int(size)).normal_(0.5, 2.0)
        scale = 1.0 if name == "randn" else 2.0
        np.testing.assert_allclose(got.data, expected[key], rtol=0, atol=2e-6 * scale, err_msg=key)
        assert got.dtype == torch.float32


def test_rng_state_has_pytorchs_bytes_and_round_trips():
    for seed in EXACT["info"]["seeds"]:
        torch.manual_seed(seed)
        torch.rand(5)
        torch.randn(3)  # one normal is left cached in the generator
        state = torch.get_rng_state()
        assert digest(state) == DRAWS[f"get_rng_state/{seed}"]
        after = torch.randn(3).data  # uses the cached normal first
        torch.set_rng_state(state)
        np.testing.assert_array_equal(torch.randn(3).data, after)


def test_dataloader_shuffle_and_random_split_follow_pytorch():
    for seed in EXACT["info"]["seeds"]:
        torch.manual_seed(seed)
        loader = DataLoader(list(range(23)), batch_size=4, shuffle=True, drop_last=True)
        expected = LOADERS[f"dataloader_shuffle/{seed}"]
        assert [[batch.tolist() for batch in loader] for _ in range(3)] == expected["epochs"]
        assert torch.randint(0, 2**30, (4,)).tolist() == expected["after"]  # the default stream moved as PyTorch's
        torch.manual_seed(seed)
        loader = DataLoader(list(range(11)), batch_size=3, shuffle=False)
        expected = LOADERS[f"dataloader_plain/{seed}"]
        assert [[batch.tolist() for batch in loader] for _ in range(2)] == expected["epochs"]
        assert torch.randint(0, 2**30, (4,)).tolist() == expected["after"]
        generator = Generator().manual_seed(seed)
        loader = DataLoader(list(range(10)), batch_size=3, shuffle=True, generator=generator)
        expected = LOADERS[f"dataloader_generator/{seed}"]
        assert [[batch.tolist() for batch in loader] for _ in range(2)] == expected["epochs"]
        assert torch.randint(0, 2**30, (4,), generator=generator).tolist() == expected["after"]
        splits = random_split(range(30), [0.3, 0.3, 0.4], generator=Generator().manual_seed(seed))
        torch.manual_seed(seed)
        default_splits = random_split(range(10), [3, 7])
        expected = LOADERS[f"random_split/{seed}"]
        assert [list(split) for split in splits] == expected["fractions"]
        assert [list(split) for split in default_splits] == expected["default"]


def test_book_dropout_matrix():
    """Chapter 3's `torch.manual_seed(123); nn.Dropout(0.5)(torch.ones(6, 6))`, both kernel sets."""
    for kernels in ("reference", "fast"):
        with torch.kernels(kernels):
            torch.manual_seed(123)
            got = torch.nn.Dropout(0.5)(torch.ones(6, 6))
        np.testing.assert_array_equal(got.data, np.array(LOADERS["book_dropout_6x6"], dtype=np.float32))


def test_gptmodel_pytorch_init_equals_the_books_model():
    """`torch.manual_seed(123); GPTModel(cfg)` gives the book's ch04 GPTModel weights (small config):
    Linear weights and biases bit for bit, embeddings within the float32 normals' rounding;
    then a training-mode forward pass (dropout masks in the attention and the shortcuts) and the
    book's `generate` (top_k 25, temperature 1.4, torch.multinomial)."""
    from minigpt.generate import generate
    from minigpt.model import GPTModel

    expected = np.load(FIXTURES / "book_model.npz")
    torch.manual_seed(123)
    model = GPTModel(EXACT["info"]["small_config"])
    state = model.state_dict()
    for key in [key for key in expected.files if key.startswith("weight/")]:
        name = key.removeprefix("weight/")
        got = np.asarray(getattr(state[name], "data", state[name]))
        if name.endswith("emb.weight"):
            np.testing.assert_allclose(got, expected[key], rtol=0, atol=2e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(got, expected[key], err_msg=name)
    for kernels in ("reference", "fast"):
        with torch.kernels(kernels):
            torch.manual_seed(7)
            model.train()
            logits = model(torch.tensor([[1, 2, 3, 4, 5, 6]]))
        np.testing.assert_allclose(logits.data, expected["train_forward"], rtol=0, atol=2e-5, err_msg=kernels)
    model.eval()
    torch.manual_seed(123)
    out = generate(model, np.array([[1, 2, 3]]), max_new_tokens=10, context_size=16, top_k=25, temperature=1.4)
    np.testing.assert_array_equal(out, expected["generate_top_k"])


def test_seeds_as_pytorch_reads_them():
    assert torch.manual_seed(2**64 - 1).initial_seed() == 2**64 - 1
    assert torch.manual_seed(-1).initial_seed() == 2**64 - 1  # PyTorch wraps negatives
    assert torch.Generator().initial_seed() == 67280421310721  # PyTorch's default seed
    for bad, error in ((2**64, ValueError), (-(2**63) - 1, ValueError), ("a", ValueError), (None, TypeError)):
        with pytest.raises(error, match="seed"):
            torch.manual_seed(bad)
    torch.manual_seed(2**32 + 5)  # only the low 32 bits seed the twister, as std::mt19937
    a = torch.rand(3).data
    torch.manual_seed(5)
    np.testing.assert_array_equal(torch.rand(3).data, a)
    seed = torch.seed()
    assert torch.initial_seed() == seed and 0 <= seed < 2**53


def test_generator_objects_are_independent_of_the_default():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    g = torch.Generator().manual_seed(123)
    a = torch.rand(4, generator=g).data
    np.testing.assert_array_equal(torch.get_rng_state(), before)
    torch.manual_seed(123)
    np.testing.assert_array_equal(torch.rand(4).data, a)
    state = g.get_state()
    b = torch.randn(20, generator=g).data
    g.set_state(state)
    np.testing.assert_array_equal(torch.randn(20, generator=g).data, b)
    g.set_state(torch.tensor(state))  # a ByteTensor, as PyTorch's
    np.testing.assert_array_equal(torch.randn(20, generator=g).data, b)
    with pytest.raises(ValueError, match="5056"):
        g.set_state(torch.tensor(np.zeros(10, np.uint8)))


def test_numpy_generators_still_work():
    """A np.random.Generator passed as generator= / rng= draws NumPy's streams, as before."""
    a = torch.rand(3, generator=np.random.default_rng(0)).data
    np.testing.assert_array_equal(a, np.random.default_rng(0).random(3, dtype=np.float32))
    out = F.dropout(torch.ones(100), p=0.5, rng=np.random.default_rng(1))
    assert set(np.unique(out.data)) <= {0.0, 2.0}


def test_the_default_generator_starts_from_a_fresh_seed_in_every_process():
    # PyTorch 2.13 seeds its default CPU generator from the OS's entropy (torch.initial_seed()
    # differs between processes); a new Generator() starts from the fixed default seed.
    import subprocess
    import sys

    code = "import autograd; print(autograd.initial_seed())"
    seeds = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout for _ in range(2)}
    assert len(seeds) == 2
