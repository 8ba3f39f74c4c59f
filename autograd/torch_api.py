"""The rest of PyTorch's tensor surface that the book calls: top-level functions and Tensor methods.

`tensor.py` and `ops.py` hold what the engine itself needs; this file adds, under PyTorch's names,
what a reader types in the book's listings with `import autograd as torch`:

- functions: `torch.exp`, `log`, `sqrt`, `tanh`, `abs`, `pow`, `sigmoid`, `softmax`, `sum`,
  `mean`, `argmax`, `topk`, `multinomial`, `dot`, `gather`, `nonzero`, `bincount` (ch. 3-5, A);
- methods: `dot`, `bool`, `long`, `int`, `contiguous`, `clone`, `flatten`, `chunk`, `gather`,
  `topk`, `sigmoid`, `dim`, `to(device or dtype)`, `device`, `fill_`, `zero_`, `masked_fill_`,
  item assignment `t[i] = value`, and `f"{loss:.2f}"`, `float(t)`, `np.asarray(t)`.

Three new differentiable operations are here, each with its backward rule beside it: `Gather`
(used by `topk` too), `Clone` and `SetItem`.

In-place operations follow PyTorch's autograd rules:
- a tensor that needs no gradient is changed in place (its array is written, so a tensor made by
  `from_numpy` and the array stay in step, as in PyTorch);
- a leaf that requires grad may only be changed under `no_grad()` (weight initialisation);
  otherwise RuntimeError, with PyTorch's message;
- a tensor computed from others (a non-leaf, e.g. the book's `attn_scores.masked_fill_(...)` in
  chapter 3) gets the out-of-place result recorded as a new operation whose input is the tensor's
  previous value; the Python object then stands for the new value, as in PyTorch.
- version counters, as PyTorch: every Tensor counts its in-place changes (`_version`); an
  operation records its inputs' counts when it is applied, and its backward raises PyTorch's
  RuntimeError "one of the variables needed for gradient computation has been modified by an
  inplace operation" when one changed since, instead of sending gradients along the wrong history
  or through changed values. minigpt records every input of an operation (PyTorch only those the
  backward saves), so it also raises for an input of Add/Sub changed later, which PyTorch allows.
  NOTE: unlike PyTorch, views do not share a counter: an in-place change of a slice of a graph
  tensor does not write through to the tensor it was sliced from (on tensors without gradient,
  slices are views and do, as in PyTorch), and changing a slice or a `detach()`ed alias of a
  tensor is not detected.

References: PyTorch docs, torch.Tensor and "Autograd mechanics: in-place operations"; book
chapters 3 (masked_fill_, dot, empty + item assignment), 4 (print_gradients), 5 (topk,
multinomial, where), appendix A (tensors, to(device)).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np


from autograd.creation import CPU, check_device, device
from autograd.ops import MaskedFill, _normalize_dim, _to, unbroadcast
from autograd.random import resolve_generator
from autograd.tensor import Function, Tensor, as_tensor, is_grad_enabled

TopK = namedtuple("TopK", ["values", "indices"])
TopK.__doc__ = "Result of `topk`: the k values (differentiable) and their int64 indices."


def _check_tensor(value, function: str, argument: str = "input") -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{function}: {argument} must be a Tensor, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------------------------
# New differentiable operations
# --------------------------------------------------------------------------------------------


def _gather_index(index: np.ndarray, axis: int) -> tuple:
    """The NumPy index picking out[i][j][k] = a[i][index[i][j][k]][k] (for axis 1), any rank."""
    grids = list(np.ix_(*[np.arange(size) for size in index.shape]))  # open grids, broadcastable
    grids[axis] = index
    return tuple(grids)


class Gather(Function):
    """out[..., i, ...] = a[..., index[..., i, ...], ...] along `dim` (torch.gather).

    da = zeros of a's shape with dout added at the gathered positions; `np.add.at` adds every
    copy when an index repeats.
    """

    def forward(self, a, index, axis):
        self.a_shape, self.where = a.shape, _gather_index(index, axis)
        return a[self.where]

    def backward(self, dout):
        da = np.zeros(self.a_shape, dtype=dout.dtype)
        np.add.at(da, self.where, dout)
        return da


class Clone(Function):
    """out = a copy of a (new memory).   da = dout."""

    def forward(self, a):
        return a.copy()

    def backward(self, dout):
        return dout


class SetItem(Function):
    """out = a with out[index] = value (value broadcast to the selected shape).

    da = dout with zeros at the written positions (they no longer depend on a);
    dvalue = dout[index], unbroadcast to value's shape. With an integer-array index that repeats a
    position, the last write wins in forward and every copy receives dout in backward (PyTorch
    leaves this case undefined).
    """

    def forward(self, a, value, index):
        self.index, self.value_shape = index, value.shape
        out = a.copy()
        out[index] = value
        return out

    def backward(self, dout):
        da = None
        if self.needs_input_grad[0]:
            da = dout.copy()
            da[self.index] = 0
        dvalue = None
        if self.needs_input_grad[1]:
            selected = np.asarray(dout[self.index])
            dvalue = unbroadcast(selected, self.value_shape) if selected.shape != self.value_shape else selected.copy()
        return da, dvalue


# --------------------------------------------------------------------------------------------
# In-place changes (see the module docstring for the rules)
# --------------------------------------------------------------------------------------------


def _in_place(self: Tensor, function: str, write, record) -> Tensor:
    """Apply an in-place change: `write()` changes self.data directly; `record()` returns the
    out-of-place result (a Tensor with a grad_fn whose input is `self`) for a non-leaf."""
    if not self.requires_grad or not is_grad_enabled():
        if not self.is_leaf or not self.data.flags.writeable:
            # A non-leaf changed under no_grad: its array may be saved by the op that made it, so
            # write into a copy (PyTorch would raise at the next backward). A read-only array
            # (an expand() view) gets its own memory too.
            self.data = self.data.copy()
        write()  # a leaf is written in place: parameters stay views of the optimizer's buffer
        self._version += 1  # an operation that used the old values raises at backward
        return self
    if self.is_leaf:
        raise RuntimeError(
            f"{function}: a leaf Variable that requires grad is being used in an in-place operation "
            "(change parameters under `with torch.no_grad():`)"
        )
    previous = Tensor._make(self.data, True)  # the value before the change keeps the old history
    previous.grad_fn, previous._version = self.grad_fn, self._version
    result = record()
    function_object = result.grad_fn
    function_object.inputs = tuple(previous if item is self else item for item in function_object.inputs)
    self.data, self.grad_fn = result.data, function_object
    # Operations that used self before now hold the wrong history: their backward raises.
    self._version += 1
    return self


def _masked_fill_(self: Tensor, mask, value) -> Tensor:
    """Put `value` where `mask` is True, in place (torch.Tensor.masked_fill_; book ch. 3.5.1).

    Raises as `masked_fill`; RuntimeError for a leaf that requires grad outside `no_grad`.
    """
    mask_array = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
    self.masked_fill(mask_array, value)  # validates mask dtype and shape with clear messages

    def write():
        np.copyto(self.data, self.data.dtype.type(value), where=mask_array)

    return _in_place(self, "masked_fill_", write, lambda: MaskedFill.apply(self, mask=mask_array, value=value))


def _fill_(self: Tensor, value) -> Tensor:
    """Set every element to `value`, in place (torch.Tensor.fill_)."""
    return _masked_fill_(self, np.ones((), dtype=bool), value)


def _zero_(self: Tensor) -> Tensor:
    """Set every element to 0, in place (torch.Tensor.zero_)."""
    return _fill_(self, 0)


def _setitem(self: Tensor, index, value) -> None:
    """`t[index] = value` (a number, array or Tensor broadcast to the selection), as PyTorch.

    Raises:
        RuntimeError: a leaf that requires grad, outside `no_grad`.
        ValueError: value does not broadcast to the selected shape.
    """
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(part.data if isinstance(part, Tensor) else part for part in index)
    if isinstance(index, list):
        index = np.asarray(index)
    value = as_tensor(value, like=self)
    selected_shape = np.shape(self.data[index])
    try:
        np.broadcast_shapes(value.shape, selected_shape)
    except ValueError:
        raise ValueError(f"setitem: a value of shape {value.shape} cannot be assigned to a selection of shape {selected_shape}") from None

    def write():
        self.data[index] = value.data

    def record():
        return SetItem.apply(self, _to(value, self.dtype), index=index)

    _in_place(self, "setitem", write, record)


# --------------------------------------------------------------------------------------------
# Methods
# --------------------------------------------------------------------------------------------


def _dot(self: Tensor, other: Tensor) -> Tensor:
    """Inner product of two 1-D tensors of equal length (torch.dot; book ch. 3.3.1).

    Raises:
        ValueError: an operand is not 1-D, or the lengths differ.
    """
    other = as_tensor(other, like=self)
    if self.ndim != 1 or other.ndim != 1:
        raise ValueError(f"dot: expected two 1-D tensors, got shapes {self.shape} and {other.shape}")
    if self.shape != other.shape:
        raise ValueError(f"dot: inconsistent tensor sizes {self.shape[0]} and {other.shape[0]}")
    return self @ other  # Matmul of two vectors: a scalar, with its backward rule


def _flatten(self: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dimensions start_dim..end_dim into one (torch.flatten); `logits.flatten(0, 1)` gives
    (B*T, V) from (B, T, V) in the book's loss (ch. 5.1.2). A 0-d tensor becomes shape (1,)."""
    if self.ndim == 0:
        return self.reshape(1)
    start = _normalize_dim(start_dim, self.ndim, "start_dim")[0]
    end = _normalize_dim(end_dim, self.ndim, "end_dim")[0]
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim} for shape {self.shape}")
    merged = int(np.prod(self.shape[start:end + 1]))
    return self.reshape(self.shape[:start] + (merged,) + self.shape[end + 1:])


def _chunk(self: Tensor, chunks: int, dim: int = 0) -> tuple:
    """Split into `chunks` pieces of ceil(n / chunks) along `dim`, the last smaller (torch.chunk)."""
    if isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)) or chunks < 1:
        raise ValueError(f"chunk: chunks must be a positive int, got {chunks!r}")
    length = self.shape[_normalize_dim(dim, self.ndim)[0]]
    size = max(-(-length // chunks), 1)
    return self.split(size, dim)


def _gather(self: Tensor, dim: int, index) -> Tensor:
    """out[i][j] = self[i][index[i][j]] for dim=1 (torch.gather); differentiable in self.

    Args:
        dim: the dimension to pick along.
        index: int64 tensor/array of self's rank; other dimensions at most self's.

    Raises:
        TypeError: index is not an integer tensor. ValueError: ranks differ or an index is out of range.
    """
    index = index.data if isinstance(index, Tensor) else np.asarray(index)
    if index.dtype.kind not in "iu":
        raise TypeError(f"gather: index must be an integer tensor, got dtype {index.dtype}")
    if index.ndim != self.ndim:
        raise ValueError(f"gather: index has {index.ndim} dimensions but input has {self.ndim}")
    axis = _normalize_dim(dim, self.ndim)[0]
    for d, (size, limit) in enumerate(zip(index.shape, self.shape)):
        if d != axis and size > limit:
            raise ValueError(f"gather: index shape {index.shape} exceeds input shape {self.shape} in dimension {d}")
    if index.size and (index.min() < -self.shape[axis] or index.max() >= self.shape[axis]):
        raise ValueError(f"gather: index out of range for dimension {dim} of size {self.shape[axis]}")
    return Gather.apply(self, index=index, axis=axis)


def _topk(self: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> TopK:  # noqa: A002
    """The k largest (or smallest) values along `dim` and their indices (torch.topk; ch. 5.3.2).

    Returns:
        TopK(values, indices): values differentiable (a Gather of self), indices int64, both with
        size k along `dim`, in descending order for largest=True (ascending for largest=False).
        Among equal values, the one with the lower index comes first.

    Raises:
        ValueError: k outside [0, size of dim].
    """
    axis = _normalize_dim(dim, self.ndim)[0] if self.ndim else None
    length = self.shape[axis] if self.ndim else 1
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= length:
        raise ValueError(f"topk: k must be an int in [0, {length}], got {k!r}")
    if self.ndim == 0:  # as PyTorch: a 0-d input gives 0-d results for k = 1
        flat = _topk(self.reshape(1), k, 0, largest, sorted)
        return TopK(flat.values.reshape(()), flat.indices.reshape(())) if k == 1 else flat
    keys = -self.data if largest and self.dtype.kind in "fi" else self.data
    order = np.argsort(keys, axis=axis, kind="stable")
    if largest and self.dtype.kind not in "fi":
        order = np.flip(order, axis=axis)
    indices = np.take(order, np.arange(k), axis=axis).astype(np.int64)
    return TopK(_gather(self, axis, indices), Tensor._make(indices, False))


def _clone(self: Tensor) -> Tensor:
    """A copy with its own memory, differentiable (torch.Tensor.clone)."""
    return Clone.apply(self)


def _contiguous(self: Tensor) -> Tensor:
    """self when its array is C-contiguous (as PyTorch), else a differentiable copy."""
    return self if self.data.flags.c_contiguous else Clone.apply(self)


def _bool(self: Tensor) -> Tensor:
    """Convert to bool (torch.Tensor.bool; `mask.bool()` in ch. 3), no gradient."""
    return Tensor._make(self.data.astype(np.bool_), False)


def _long(self: Tensor) -> Tensor:
    """Convert to int64 (torch.Tensor.long), no gradient."""
    return Tensor._make(self.data.astype(np.int64), False)


def _int(self: Tensor) -> Tensor:
    """Convert to int32 (torch.Tensor.int), no gradient."""
    return Tensor._make(self.data.astype(np.int32), False)


def _half(self: Tensor) -> Tensor:
    """Convert to float16 (torch.Tensor.half); gradients flow back converted."""
    return _to(self, np.float16)


def _is_dtype(value) -> bool:
    if isinstance(value, (str, device)) or value is None:
        return False
    try:
        np.dtype(value)
    except TypeError:
        return False
    return True


def _to_device_or_dtype(self: Tensor, *args, dtype=None, device=None, non_blocking: bool = False, copy: bool = False) -> Tensor:
    """`to(dtype)`, `to(device)`, `to(device, dtype)` or `to(other_tensor)`, as torch.Tensor.to.

    The device must be the CPU ("cpu", `torch.device("cpu")`): minigpt runs on NumPy only. A dtype
    change is recorded (gradients flow back converted); nothing to do returns self.

    Raises:
        RuntimeError: a device other than the CPU. TypeError: an argument that is neither.
    """
    for argument in args:
        if isinstance(argument, Tensor):
            dtype = argument.dtype
        elif _is_dtype(argument):
            dtype = argument
        elif isinstance(argument, (str, type(CPU))):
            device = argument
        else:
            raise TypeError(f"to: expected a device ('cpu'), a dtype (torch.float32) or a tensor, got {argument!r}")
    check_device(device, "to")
    result = self if dtype is None else _to(self, dtype)
    return _clone(result) if copy and result is self else result


def _device(self: Tensor) -> device:
    """The device holding the values: always the CPU."""
    return CPU


def _dim(self: Tensor) -> int:
    """The number of dimensions (torch.Tensor.dim)."""
    return self.ndim


def _format(self: Tensor, spec: str) -> str:
    """`f"{loss:.2f}"` formats a one-element tensor's value (as PyTorch); else str(self)."""
    if self.data.size == 1 and spec:
        return format(self.data.item(), spec)
    return format(repr(self), spec)


def _float_value(self: Tensor) -> float:
    """`float(t)` for a one-element tensor."""
    return float(self.item())


def _int_value(self: Tensor) -> int:
    """`int(t)` for a one-element tensor."""
    return int(self.item())


def _index(self: Tensor) -> int:
    """Use a one-element integer tensor as a Python index (`range(t)`, `list[t]`)."""
    if self.dtype.kind not in "iu" or self.data.size != 1:
        raise TypeError(f"only one-element integer tensors can be used as an index, got {self.dtype} of shape {self.shape}")
    return int(self.data.item())


def _array(self: Tensor, dtype=None, copy=None) -> np.ndarray:
    """`np.asarray(t)`: the values (no copy unless a dtype change or copy=True asks for one)."""
    array = self.data if dtype is None else self.data.astype(dtype, copy=False)
    return array.copy() if copy else array


Tensor.dot = _dot
Tensor.flatten = _flatten
Tensor.chunk = _chunk
Tensor.gather = _gather
Tensor.topk = _topk
Tensor.clone = _clone
Tensor.contiguous = _contiguous
Tensor.bool = _bool
Tensor.long = _long
Tensor.int = _int
Tensor.half = _half
Tensor.to = _to_device_or_dtype
Tensor.device = property(_device)
Tensor.dim = _dim
Tensor.masked_fill_ = _masked_fill_
Tensor.fill_ = _fill_
Tensor.zero_ = _zero_
Tensor.__setitem__ = _setitem
Tensor.__format__ = _format
Tensor.__float__ = _float_value
Tensor.__int__ = _int_value
Tensor.__index__ = _index
Tensor.__array__ = _array


def _sigmoid_method(self: Tensor) -> Tensor:
    """1 / (1 + exp(-x)), elementwise (see autograd.functional.sigmoid)."""
    from autograd.functional import sigmoid

    return sigmoid(self)


Tensor.sigmoid = _sigmoid_method


# --------------------------------------------------------------------------------------------
# Top-level functions (torch.exp(x) is x.exp() ...)
# --------------------------------------------------------------------------------------------


def exp(input: Tensor) -> Tensor:  # noqa: A002 - torch's argument name
    """e ** x, elementwise (torch.exp)."""
    return as_tensor(input).exp()


def log(input: Tensor) -> Tensor:  # noqa: A002
    """Natural logarithm, elementwise (torch.log)."""
    return as_tensor(input).log()


def sqrt(input: Tensor) -> Tensor:  # noqa: A002
    """Square root, elementwise (torch.sqrt)."""
    return as_tensor(input).sqrt()


def tanh(input: Tensor) -> Tensor:  # noqa: A002
    """Hyperbolic tangent, elementwise (torch.tanh)."""
    return as_tensor(input).tanh()


def abs(input: Tensor) -> Tensor:  # noqa: A002
    """Absolute value, elementwise (torch.abs)."""
    return as_tensor(input).abs()


def pow(input, exponent) -> Tensor:  # noqa: A002
    """input ** exponent; either may be a number (torch.pow; the GELU of ch. 4.3 uses pow(x, 3))."""
    if isinstance(input, Tensor):
        return input ** exponent
    return as_tensor(exponent).__rpow__(input)


def sigmoid(input: Tensor) -> Tensor:  # noqa: A002
    """The logistic function, elementwise (torch.sigmoid; appendix A.3)."""
    from autograd.functional import sigmoid as functional_sigmoid

    return functional_sigmoid(input)


def softmax(input: Tensor, dim: int) -> Tensor:  # noqa: A002
    """Softmax along `dim` (torch.softmax), stable (see autograd.functional.softmax)."""
    from autograd.functional import softmax as functional_softmax

    return functional_softmax(as_tensor(input), dim)


def sum(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:  # noqa: A001,A002
    """Sum over `dim` (torch.sum); a bool tensor counts its True values (int64), as PyTorch."""
    input = as_tensor(input)
    if input.dtype == np.bool_:
        input = _long(input)
    return input.sum(dim=dim, keepdim=keepdim)


def mean(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:  # noqa: A002
    """Mean over `dim` (torch.mean)."""
    return as_tensor(input).mean(dim=dim, keepdim=keepdim)


def argmax(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:  # noqa: A002
    """Index of the largest value, int64 (torch.argmax; greedy decoding in ch. 4.7)."""
    return _check_tensor(input, "argmax").argmax(dim=dim, keepdim=keepdim)


def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> TopK:  # noqa: A002
    """The k largest values and their indices (torch.topk); see `Tensor.topk`."""
    return _topk(_check_tensor(input, "topk"), k, dim, largest, sorted)


def gather(input: Tensor, dim: int, index) -> Tensor:  # noqa: A002
    """Values picked along `dim` by `index` (torch.gather); see `Tensor.gather`."""
    return _gather(_check_tensor(input, "gather"), dim, index)


def dot(input: Tensor, other: Tensor) -> Tensor:  # noqa: A002
    """Inner product of two 1-D tensors (torch.dot); see `Tensor.dot`."""
    return _dot(as_tensor(input), other)


def clone(input: Tensor) -> Tensor:  # noqa: A002
    """A differentiable copy (torch.clone)."""
    return _clone(_check_tensor(input, "clone"))


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:  # noqa: A002
    """Merge dimensions start_dim..end_dim (torch.flatten)."""
    return _flatten(_check_tensor(input, "flatten"), start_dim, end_dim)


def nonzero(input: Tensor) -> Tensor:  # noqa: A002
    """Indices of the nonzero elements, int64 of shape (count, ndim) (torch.nonzero; ch. 7)."""
    return Tensor._make(np.argwhere(as_tensor(input).data).astype(np.int64), False)


def bincount(input: Tensor, weights=None, minlength: int = 0) -> Tensor:  # noqa: A002
    """Count each non-negative int's occurrences (torch.bincount; the sampling demo of ch. 5.3.1)."""
    values = as_tensor(input).data
    if values.ndim != 1 or values.dtype.kind not in "iu" or (values.size and values.min() < 0):
        raise ValueError(f"bincount: input must be a 1-D tensor of non-negative ints, got {values.dtype} of shape {values.shape}")
    weights = None if weights is None else as_tensor(weights).data
    counts = np.bincount(values, weights=weights, minlength=minlength)
    return Tensor._make(counts if weights is not None else counts.astype(np.int64), False)


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, generator=None) -> Tensor:  # noqa: A002
    """Draw indices with probability proportional to the rows of `input` (torch.multinomial).

    Args:
        input: (V,) or (B, V) non-negative weights (they need not sum to 1), e.g. softmax output.
        num_samples: draws per row; without replacement at most the number of nonzero weights.
        replacement: draw with replacement.
        generator: an `np.random.Generator` or int seed; None uses the default generator
            (`manual_seed`), so the book's `torch.manual_seed(123)` fixes the draws.

    Returns:
        int64 tensor (num_samples,) or (B, num_samples), no gradient.

    Raises:
        ValueError: input not 1-D/2-D, a negative/non-finite weight, a row summing to 0, or too
            many samples without replacement.

    References: torch.multinomial; book ch. 5.3.1 (probabilistic sampling).
    """
    weights = _check_tensor(input, "multinomial").data
    if weights.ndim not in (1, 2):
        raise ValueError(f"multinomial: input must be 1-D or 2-D, got shape {weights.shape}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"multinomial: num_samples must be a positive int, got {num_samples!r}")
    rows = np.atleast_2d(weights).astype(np.float64)
    if not np.all(np.isfinite(rows)) or np.any(rows < 0):
        raise ValueError("multinomial: probability tensor contains either inf, nan or element < 0")
    totals = rows.sum(axis=1)
    if np.any(totals <= 0):
        raise ValueError("multinomial: invalid multinomial distribution (sum of probabilities <= 0)")
    if not replacement and num_samples > np.count_nonzero(rows, axis=1).min():
        raise ValueError(f"multinomial: cannot draw {num_samples} samples without replacement from fewer nonzero weights")
    rng = resolve_generator(generator)
    samples = np.stack([rng.choice(row.size, size=num_samples, replace=replacement, p=row / total)
                        for row, total in zip(rows, totals)])
    samples = samples.astype(np.int64)
    return Tensor._make(samples[0] if weights.ndim == 1 else samples, False)


__all__ = [
    "TopK", "Gather", "Clone", "SetItem", "exp", "log", "sqrt", "tanh", "abs", "pow", "sigmoid",
    "softmax", "sum", "mean", "argmax", "topk", "gather", "dot", "clone", "flatten", "nonzero",
    "bincount", "multinomial",
]
