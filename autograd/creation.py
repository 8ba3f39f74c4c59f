"""Creation functions, dtypes and devices under PyTorch's names (`torch.zeros`, `torch.long`, ...).

The book makes its tensors with torch's factories: `torch.empty(6, 6)` for the chapter-3 attention
scores, `torch.ones(T, T)` and `torch.triu` / `torch.tril` for the causal mask, `torch.rand` and
`torch.randn` for toy inputs, `torch.arange` for positions, `torch.linspace` for plots. With
`import autograd as torch` these lines run unchanged on NumPy arrays:

    >>> import autograd as torch
    >>> _ = torch.manual_seed(123)
    >>> mask = torch.triu(torch.ones(4, 4), diagonal=1)   # (T, T), 1 above the diagonal
    >>> torch.arange(4).dtype, torch.rand(2, 3).dtype
    (dtype('int64'), dtype('float32'))

Random draws use `generator=` when given (an `autograd.Generator`, an int seed or an
`np.random.Generator`), else the process-wide default generator that `manual_seed` re-seeds; they
draw PyTorch's CPU streams, so `manual_seed(123)` then `rand(3)` prints the book's numbers (see
`autograd/random.py`).

dtypes are NumPy's scalar types (`torch.float32` is `np.float32`, `torch.long` is `np.int64`), so
`t.dtype == torch.float32` compares as in PyTorch. `torch.bfloat16` is the exception: a marker
that rounds values to bfloat16 and keeps float32 arrays (autograd/bf16.py). minigpt runs on the CPU only: `device("cpu")`
is accepted everywhere a device is; moving a tensor to another device raises a RuntimeError.

References: PyTorch docs, "Creation Ops" (torch.zeros, torch.rand, torch.arange, torch.linspace,
torch.tril, torch.triu, torch.from_numpy), torch.dtype, torch.device; book ch. 3.5 (causal mask).
"""

from __future__ import annotations

import functools
import types

import numpy as np

from autograd.bf16 import bfloat16, is_bfloat16, round_to_bfloat16  # noqa: F401 - torch.bfloat16, exported here too
from autograd.device import check_device, device  # noqa: F401 - device is torch.device, exported here too
from autograd import random as _random
from autograd.random import resolve_generator
from autograd.tensor import Tensor

# --------------------------------------------------------------------------------------------
# dtypes (NumPy scalar types under torch's names)
# --------------------------------------------------------------------------------------------

float32 = float_ = np.float32
float64 = double = np.float64
float16 = half = np.float16
int64 = long = np.int64
int32 = int_ = np.int32
int16 = short = np.int16
int8 = np.int8
uint8 = np.uint8
bool_ = np.bool_

DEFAULT_FLOAT = np.dtype(np.float32)  # torch.get_default_dtype(): float32


def _dtype(dtype, default, function: str) -> np.dtype:
    """`dtype` as an np.dtype (None gives `default`), refusing non-numeric dtypes."""
    if dtype is None:
        return np.dtype(default)
    if is_bfloat16(dtype):
        return np.dtype(np.float32)  # bfloat16 values live in float32 arrays (autograd/bf16.py)
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{function}: dtype must be a dtype such as torch.float32 or torch.long, got {dtype!r}") from None
    if resolved.kind not in "biuf":
        raise TypeError(f"{function}: dtype must be bool, integer or floating point, got {resolved}")
    return resolved


def _false() -> bool:
    """False: no such accelerator in minigpt."""
    return False


def _zero() -> int:
    """0: no such accelerator in minigpt."""
    return 0


def _no_cuda(*args, **kwargs):
    raise RuntimeError("minigpt runs on the CPU only: there is no CUDA device to select")


# torch.cuda.is_available() / torch.backends.mps.is_available(), as the book's device selection
# calls them: always False here.
cuda = types.SimpleNamespace(is_available=_false, device_count=_zero, set_device=_no_cuda)
backends = types.SimpleNamespace(mps=types.SimpleNamespace(is_available=_false, is_built=_false))


# --------------------------------------------------------------------------------------------
# Creation functions
# --------------------------------------------------------------------------------------------


def _size(size: tuple, function: str) -> tuple:
    """The shape from `f(2, 3)` or `f((2, 3))` / `f([2, 3])`, checked to be non-negative ints."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    for number in size:
        if isinstance(number, bool) or not isinstance(number, (int, np.integer)) or number < 0:
            raise ValueError(f"{function}: size must be non-negative ints, got {size}")
    return tuple(int(number) for number in size)


def _rounds_to_bfloat16(function):
    """Make `function(..., dtype=torch.bfloat16)` round its float32 values to bfloat16 (the rule
    of autograd/bf16.py: bfloat16 values in float32 arrays)."""
    @functools.wraps(function)
    def with_bfloat16(*args, **kwargs):
        result = function(*args, **kwargs)
        if is_bfloat16(kwargs.get("dtype")):
            result.data = round_to_bfloat16(result.data)
        return result
    return with_bfloat16


def _leaf(array: np.ndarray, requires_grad: bool, device_, function: str) -> Tensor:
    check_device(device_, function)
    return Tensor(array, requires_grad=requires_grad)


def empty(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of the given shape with uninitialised values (torch.empty).

    NOTE: as in PyTorch the values are whatever the memory held; fill every element before use.

    Args:
        *size: ints, or one tuple/list of ints.
        dtype: default float32. device: "cpu" or None.

    Raises:
        ValueError: a negative or non-int size. TypeError: a non-numeric dtype.
        RuntimeError: a device other than the CPU.
    """
    return _leaf(np.empty(_size(size, "empty"), _dtype(dtype, DEFAULT_FLOAT, "empty")), requires_grad, device, "empty")


def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros, float32 unless `dtype` is given (torch.zeros). Raises as `empty`."""
    return _leaf(np.zeros(_size(size, "zeros"), _dtype(dtype, DEFAULT_FLOAT, "zeros")), requires_grad, device, "zeros")


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones, float32 unless `dtype` is given (torch.ones). Raises as `empty`."""
    return _leaf(np.ones(_size(size, "ones"), _dtype(dtype, DEFAULT_FLOAT, "ones")), requires_grad, device, "ones")


@_rounds_to_bfloat16
def full(size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of `size` (tuple) filled with `fill_value` (torch.full); float32 for a float value."""
    default = np.int64 if isinstance(fill_value, (int, np.integer)) and not isinstance(fill_value, bool) else (
        np.bool_ if isinstance(fill_value, bool) else DEFAULT_FLOAT)
    array = np.full(_size((size,), "full"), fill_value, _dtype(dtype, default, "full"))
    return _leaf(array, requires_grad, device, "full")


def _like(input: Tensor, dtype, function: str) -> tuple:  # noqa: A002 - torch's name
    if not isinstance(input, Tensor):
        raise TypeError(f"{function}: input must be a Tensor, got {type(input).__name__}")
    return input.shape, _dtype(dtype, input.dtype, function)


def zeros_like(input: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:  # noqa: A002
    """Zeros of `input`'s shape and dtype (torch.zeros_like)."""
    shape, dtype = _like(input, dtype, "zeros_like")
    return _leaf(np.zeros(shape, dtype), requires_grad, device, "zeros_like")


def ones_like(input: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:  # noqa: A002
    """Ones of `input`'s shape and dtype (torch.ones_like)."""
    shape, dtype = _like(input, dtype, "ones_like")
    return _leaf(np.ones(shape, dtype), requires_grad, device, "ones_like")


@_rounds_to_bfloat16
def full_like(input: Tensor, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:  # noqa: A002
    """`fill_value` in `input`'s shape and dtype (torch.full_like), e.g. -inf logits (ch. 5.3.2)."""
    shape, dtype = _like(input, dtype, "full_like")
    return _leaf(np.full(shape, fill_value, dtype), requires_grad, device, "full_like")


def _random_float_dtype(dtype, function: str) -> np.dtype:
    resolved = _dtype(dtype, DEFAULT_FLOAT, function)
    if resolved not in (np.float32, np.float64):
        raise TypeError(f"{function}: dtype must be float32 or float64, got {resolved}")
    return resolved


@_rounds_to_bfloat16
def rand(*size, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) (torch.rand), float32 by default, PyTorch's CPU stream.

    Args:
        *size: ints, or one tuple/list of ints.
        generator: an `autograd.Generator`, an int seed or an `np.random.Generator`; None draws
            from the default generator (`manual_seed`).

    Raises:
        ValueError: a bad size. TypeError: a dtype other than float32/float64, a bad generator.

    References: torch.rand; autograd/random.py (the transform).
    """
    dtype = _random_float_dtype(dtype, "rand")
    array = _random.uniform(resolve_generator(generator), _size(size, "rand"), dtype=dtype)
    return _leaf(array, requires_grad, device, "rand")


@_rounds_to_bfloat16
def randn(*size, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples N(0, 1) (torch.randn), float32 by default, PyTorch's CPU stream
    (its two paths, fewer than 16 elements and 16 or more: see autograd/random.py). Raises as `rand`."""
    dtype = _random_float_dtype(dtype, "randn")
    array = _random.normal(resolve_generator(generator), _size(size, "randn"), dtype=dtype)
    return _leaf(array, requires_grad, device, "randn")


def rand_like(input: Tensor, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:  # noqa: A002
    """`rand` in `input`'s shape and (float) dtype (torch.rand_like)."""
    shape, dtype = _like(input, dtype, "rand_like")
    return rand(shape, generator=generator, dtype=dtype, device=device, requires_grad=requires_grad)


def randn_like(input: Tensor, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:  # noqa: A002
    """`randn` in `input`'s shape and (float) dtype (torch.randn_like)."""
    shape, dtype = _like(input, dtype, "randn_like")
    return randn(shape, generator=generator, dtype=dtype, device=device, requires_grad=requires_grad)


def randint(low: int, high: int | None = None, size: tuple = (), generator=None, dtype=None, device=None) -> Tensor:
    """Integers drawn uniformly from [low, high) (torch.randint; `randint(high, size)` too), int64.

    PyTorch's CPU transform: random32 % (high - low) + low (random64 from a range of 2**28 up).

    Raises:
        ValueError: high <= low, or a bad size.
    """
    if high is None:
        low, high = 0, low
    array = _random.integers(resolve_generator(generator), int(low), int(high), _size((size,), "randint"),
                             _dtype(dtype, np.int64, "randint"))
    return _leaf(array, False, device, "randint")


def randperm(n: int, generator=None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A random permutation of 0..n-1 (torch.randperm), int64, PyTorch's CPU Fisher-Yates.

    Raises:
        ValueError: n is not a non-negative int.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"randperm: n must be a non-negative int, got {n!r}")
    array = _random.permutation(resolve_generator(generator), int(n)).astype(_dtype(dtype, np.int64, "randperm"))
    return _leaf(array, requires_grad, device, "randperm")


def bernoulli(input: Tensor, p=None, generator=None) -> Tensor:  # noqa: A002
    """1 with probability `input[i]` (or the scalar `p`), else 0, in input's dtype (torch.bernoulli).

    Raises:
        TypeError: input is not a float Tensor. ValueError: a probability outside [0, 1].
    """
    if not isinstance(input, Tensor) or input.dtype.kind != "f":
        raise TypeError(f"bernoulli: input must be a float Tensor of probabilities, got {getattr(input, 'dtype', type(input).__name__)}")
    gen = resolve_generator(generator)
    if p is not None:
        return Tensor._make(_random.bernoulli_keep(gen, input.shape, _probability(p, "bernoulli")).astype(input.dtype), False)
    if input.data.size and (input.data.min() < 0 or input.data.max() > 1):
        raise ValueError("bernoulli: every probability in input must be in [0, 1]")
    return Tensor._make(_random.bernoulli_tensor(gen, np.ascontiguousarray(input.data)).astype(input.dtype), False)


def _probability(p, function: str) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)) or not 0 <= p <= 1:
        raise ValueError(f"{function}: p must be a probability in [0, 1], got {p!r}")
    return float(p)


@_rounds_to_bfloat16
def arange(start, end=None, step=1, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Values start, start + step, ... below `end` (torch.arange; `arange(end)` starts at 0).

    The dtype is int64 when start, end and step are all ints, else float32 (as PyTorch).

    Raises:
        ValueError: step is 0.
    """
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    all_ints = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (start, end, step))
    dtype = _dtype(dtype, np.int64 if all_ints else DEFAULT_FLOAT, "arange")
    if dtype.kind == "f":
        # Count in float64 and convert, so that float32 rounding never adds or drops an element.
        array = np.arange(start, end, step, dtype=np.float64).astype(dtype)
    else:
        array = np.arange(start, end, step, dtype=dtype)
    return _leaf(array, requires_grad, device, "arange")


@_rounds_to_bfloat16
def linspace(start, end, steps: int, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """`steps` evenly spaced values from start to end, both included (torch.linspace), float32.

    Raises:
        ValueError: steps is not a non-negative int.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"linspace: steps must be a non-negative int, got {steps!r}")
    array = np.linspace(start, end, int(steps), dtype=np.float64).astype(_dtype(dtype, DEFAULT_FLOAT, "linspace"))
    return _leaf(array, requires_grad, device, "linspace")


def _triangle(input: Tensor, diagonal: int, upper: bool, function: str) -> Tensor:  # noqa: A002
    """Zero the elements below (upper=True) or above the `diagonal`-th diagonal of the last two dims."""
    if not isinstance(input, Tensor):
        raise TypeError(f"{function}: input must be a Tensor, got {type(input).__name__}")
    if input.ndim < 2:
        raise ValueError(f"{function}: input must have at least 2 dimensions, got shape {input.shape}")
    if isinstance(diagonal, bool) or not isinstance(diagonal, (int, np.integer)):
        raise TypeError(f"{function}: diagonal must be an int, got {diagonal!r}")
    rows, columns = input.shape[-2:]
    # np.tri(k) is True where column <= row + k: tril(d) keeps tri(d); triu(d) drops tri(d - 1).
    lower = np.tri(rows, columns, k=diagonal - 1 if upper else diagonal, dtype=bool)  # (rows, cols)
    removed = lower if upper else ~lower
    # masked_fill records the op (MaskedFill) so gradients flow to the kept elements only.
    return input.masked_fill(removed, 0)


def tril(input: Tensor, diagonal: int = 0) -> Tensor:  # noqa: A002
    """Lower triangle of the last two dimensions, zeros above the `diagonal`-th diagonal (torch.tril).

    `diagonal=0` keeps the main diagonal, > 0 more diagonals above it, < 0 fewer. Differentiable:
    the gradient flows to the kept elements only.

    Raises:
        TypeError: input is not a Tensor, or diagonal is not an int. ValueError: fewer than 2 dims.
    """
    return _triangle(input, diagonal, upper=False, function="tril")


def triu(input: Tensor, diagonal: int = 0) -> Tensor:  # noqa: A002
    """Upper triangle, zeros below the `diagonal`-th diagonal (torch.triu); the book's causal mask
    is `torch.triu(torch.ones(T, T), diagonal=1)`. Raises as `tril`."""
    return _triangle(input, diagonal, upper=True, function="triu")


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor that shares memory with `array` (torch.from_numpy): writes to one show in the other.

    Raises:
        TypeError: not an np.ndarray, or of a non-numeric dtype.
    """
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected an np.ndarray, got {type(array).__name__}")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"from_numpy: the array must be bool, integer or floating point, got {array.dtype}")
    return Tensor._make(array, False)


__all__ = [
    "float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "long", "double",
    "half", "short", "device", "check_device", "cuda", "backends", "empty", "zeros", "ones",
    "full", "zeros_like", "ones_like", "full_like", "rand", "randn", "rand_like", "randn_like",
    "randint", "randperm", "bernoulli", "arange", "linspace", "tril", "triu", "from_numpy",
]
