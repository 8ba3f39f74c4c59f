"""The primitive operations of the engine, each a `Function` with a hand-written backward rule.

Every class below pairs a `forward` on plain arrays with the `backward` that reverses it. The
backward rules are the textbook derivatives; each docstring gives the formula. Binary operations
broadcast like NumPy and PyTorch, and their gradients are reduced back to each input's shape in
one place, `unbroadcast`. `Tensor`'s methods and operators (`x + y`, `x.sum(dim=1)`, `x @ w`,
`x[mask]`, ... in `tensor.py`) call these classes, following PyTorch's names and semantics (`dim=`,
`keepdim=`). This file imports only NumPy and `function.py`: an op knows arrays, not Tensors.

Shape letters: B batch, T tokens, C channels; `dout` is always the gradient flowing in from the
output, `da`, `db`, `dx` the gradients flowing out to the inputs.

References: PyTorch's derivatives.yaml (the derivative of every op); NumPy broadcasting rules.
"""

from __future__ import annotations

import numpy as np

from autograd.bf16 import is_bfloat16, round_to_bfloat16
from autograd.function import Function

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum `grad` over the dimensions that broadcasting added or stretched, giving `shape`.

    If `a` of shape (3, 1) was broadcast against (2, 3, 4), each element of `a` was used 2*4
    times, so its gradient is the sum over those uses: sum over the new leading dimension and
    over the stretched dimension of size 1.

    Args:
        grad: gradient of the broadcast result, shape `broadcast(shape, other)`.
        shape: the input's shape before broadcasting.

    Returns:
        An array of exactly `shape` (the same object when nothing was broadcast).

    Example:
        >>> unbroadcast(np.ones((2, 3, 4)), (3, 1)).ravel().tolist()
        [8.0, 8.0, 8.0]
    """
    if grad.shape == shape:
        return grad
    leading = grad.ndim - len(shape)
    axes = list(range(leading))  # the dimensions broadcasting added in front
    for i, size in enumerate(shape):  # and those it stretched from 1 (a loop: no closure to step through)
        if size == 1 and grad.shape[leading + i] != 1:
            axes.append(leading + i)
    return grad.sum(axis=tuple(axes)).reshape(shape) if axes else grad.reshape(shape)


def _broadcast_shape(a: np.ndarray, b: np.ndarray, op: str) -> None:
    """Raise a ValueError naming both shapes when `a` and `b` do not broadcast together."""
    try:
        np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"{op}: shapes {a.shape} and {b.shape} cannot be broadcast together (each dimension, "
            "compared from the right, must be equal or 1)"
        ) from None


def _normalize_dim(dim, ndim: int, argument: str = "dim") -> tuple:
    """Turn `dim` (None, int or tuple of ints, negatives allowed) into a sorted tuple of axes."""
    if dim is None:
        return tuple(range(ndim))
    dims = (dim,) if isinstance(dim, (int, np.integer)) else tuple(dim)
    axes = []
    for d in dims:
        if not isinstance(d, (int, np.integer)):
            raise TypeError(f"{argument} must be an int or a tuple of ints, got {type(d).__name__}")
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise IndexError(
                f"{argument}={d} is out of range for a tensor with {ndim} dimensions "
                f"(expected {-max(ndim, 1)} to {max(ndim, 1) - 1})"
            )
        axes.append(int(d) % max(ndim, 1) if ndim else 0)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{argument}={dim} names a dimension twice")
    return tuple(sorted(axes)) if ndim else ()


def _expand_reduced(dout: np.ndarray, axes: tuple, keepdim: bool, shape: tuple) -> np.ndarray:
    """Reshape the gradient of a reduction so that it broadcasts against the input's `shape`."""
    if keepdim or not axes:
        return dout
    kept_shape = tuple(1 if i in axes else size for i, size in enumerate(shape))
    return dout.reshape(kept_shape)


def _promote(a, b, true_division: bool = False) -> tuple:
    """Bring two operands to one dtype as PyTorch does, so that nothing silently becomes float64.

    NumPy would compute int64 * float32 in float64 (and then a backward rule would hand a float64
    gradient to a float32 input). PyTorch's rule instead: an integer or bool operand takes the
    float operand's dtype, and true division of integers gives float32; two float dtypes meet at
    the wider one through a `Cast`, whose backward returns each gradient in its input's dtype.
    """
    a_dtype, b_dtype = a.data.dtype, b.data.dtype
    if (a_dtype is b_dtype or a_dtype == b_dtype) and (not true_division or a_dtype.kind == "f"):
        return a, b  # the common case, kept cheap: this runs for every binary op
    a_float, b_float = a_dtype.kind == "f", b_dtype.kind == "f"
    if a_float and b_float:
        target = np.promote_types(a_dtype, b_dtype)
    elif a_float or b_float:
        target = a_dtype if a_float else b_dtype
    elif true_division:
        target = np.dtype(np.float32)
    else:
        return a, b  # integers and bools among themselves: NumPy's rules
    return _cast(a, target), _cast(b, target)


def _cast(tensor, dtype):
    """`tensor` converted to `dtype` by a recorded `Cast` (gradients flow back converted), or
    `tensor` itself when it has that dtype already (`Tensor.to(dtype)` and `_promote` use it).
    bfloat16 rounds the values and keeps float32 (`RoundToBfloat16`, autograd/bf16.py)."""
    if is_bfloat16(dtype):
        return RoundToBfloat16.apply(tensor)
    if np.dtype(dtype) == tensor.dtype:
        return tensor
    return Cast.apply(tensor, dtype=np.dtype(dtype))


def _float_result_dtype(array: np.ndarray) -> np.dtype:
    """float32 for bool/int input (never silently float64), the input's dtype for floats."""
    return array.dtype if array.dtype.kind == "f" else np.dtype(np.float32)


# --------------------------------------------------------------------------------------------
# Elementwise binary operations (broadcasting)
# --------------------------------------------------------------------------------------------


class Add(Function):
    """out = a + b.   da = dout, db = dout (each summed back over broadcast dimensions)."""

    def forward(self, a, b):
        _broadcast_shape(a, b, "add")
        self.a_shape, self.b_shape = a.shape, b.shape
        return a + b

    def backward(self, dout):
        da = unbroadcast(dout, self.a_shape) if self.needs_input_grad[0] else None
        db = unbroadcast(dout, self.b_shape) if self.needs_input_grad[1] else None
        return da, db


class Sub(Function):
    """out = a - b.   da = dout, db = -dout."""

    def forward(self, a, b):
        _broadcast_shape(a, b, "sub")
        self.a_shape, self.b_shape = a.shape, b.shape
        return a - b

    def backward(self, dout):
        da = unbroadcast(dout, self.a_shape) if self.needs_input_grad[0] else None
        db = unbroadcast(-dout, self.b_shape) if self.needs_input_grad[1] else None
        return da, db


class Mul(Function):
    """out = a * b.   da = dout * b, db = dout * a (the product rule)."""

    def forward(self, a, b):
        _broadcast_shape(a, b, "mul")
        self.a, self.b = a, b
        return a * b

    def backward(self, dout):
        da = unbroadcast(dout * self.b, self.a.shape) if self.needs_input_grad[0] else None
        db = unbroadcast(dout * self.a, self.b.shape) if self.needs_input_grad[1] else None
        return da, db


class Div(Function):
    """out = a / b.   da = dout / b, db = -dout * a / b^2 = -dout * out / b."""

    def forward(self, a, b):
        _broadcast_shape(a, b, "div")
        self.a_shape, self.b = a.shape, b
        self.out = a / b
        return self.out

    def backward(self, dout):
        da = unbroadcast(dout / self.b, self.a_shape) if self.needs_input_grad[0] else None
        db = unbroadcast(-dout * self.out / self.b, self.b.shape) if self.needs_input_grad[1] else None
        return da, db


class Pow(Function):
    """out = a ** b for two tensors.   da = dout * b * a^(b-1),  db = dout * out * log(a).

    NOTE: the gradient with respect to the exponent is only defined for a > 0 (log a); where
    a <= 0 it is set to 0, as PyTorch does for a == 0.
    """

    TORCH_NAME = "PowBackward1"  # a tensor exponent (torch: PowBackward2 for a number base)

    def forward(self, a, b):
        _broadcast_shape(a, b, "pow")
        self.a, self.b = a, b
        self.out = a**b
        return self.out

    def backward(self, dout):
        a, b = self.a, self.b
        da = db = None
        if self.needs_input_grad[0]:
            da = unbroadcast(dout * b * a ** (b - 1), a.shape)
        if self.needs_input_grad[1]:
            positive = a > 0
            log_a = np.log(np.where(positive, a, 1))
            db = unbroadcast(np.where(positive, dout * self.out * log_a, 0).astype(b.dtype), b.shape)
        return da, db


class PowScalar(Function):
    """out = a ** p for a constant Python number p.   da = dout * p * a^(p-1).

    Small integer powers are computed by multiplication: on large float32 arrays `x ** 3` is
    about 180x slower than `x * x * x` in NumPy 2 (measured; see DESIGN.md).
    """

    TORCH_NAME = "PowBackward0"

    def forward(self, a, exponent):
        self.a, self.exponent = a, exponent
        if exponent == 2:
            return a * a
        if exponent == 3:
            return a * a * a
        if exponent == 0.5:
            return np.sqrt(a)
        if exponent == -1:
            return np.reciprocal(a)
        return a ** a.dtype.type(exponent) if a.dtype.kind == "f" else a**exponent

    def backward(self, dout):
        a, p = self.a, self.exponent
        if p == 2:
            return dout * (2 * a)
        if p == 3:
            return dout * (3 * (a * a))
        return dout * (a.dtype.type(p) * a ** a.dtype.type(p - 1))


class Maximum(Function):
    """out = max(a, b) elementwise.   The gradient goes to the larger input; on a tie it is split
    half and half (as torch.maximum)."""

    def forward(self, a, b):
        _broadcast_shape(a, b, "maximum")
        self.a, self.b = a, b
        return np.maximum(a, b)

    def backward(self, dout):
        a, b = self.a, self.b
        share_a = (a > b) + 0.5 * (a == b)  # 1 where a wins, 0.5 on a tie, 0 where b wins
        share_a = share_a.astype(dout.dtype)
        da = unbroadcast(dout * share_a, a.shape) if self.needs_input_grad[0] else None
        db = unbroadcast(dout * (1 - share_a), b.shape) if self.needs_input_grad[1] else None
        return da, db


class Where(Function):
    """out = a where condition else b.   da = dout where condition, db = dout elsewhere.

    Inputs: the two value tensors; `condition` (a bool array) is a constant option.
    """

    def forward(self, a, b, condition):
        self.condition = condition
        self.a_shape, self.b_shape = a.shape, b.shape
        return np.where(condition, a, b)

    def backward(self, dout):
        zero = np.zeros((), dtype=dout.dtype)
        da = unbroadcast(np.where(self.condition, dout, zero), self.a_shape) if self.needs_input_grad[0] else None
        db = unbroadcast(np.where(self.condition, zero, dout), self.b_shape) if self.needs_input_grad[1] else None
        return da, db


# --------------------------------------------------------------------------------------------
# Elementwise unary operations
# --------------------------------------------------------------------------------------------


class Neg(Function):
    """out = -a.   da = -dout."""

    def forward(self, a):
        return -a

    def backward(self, dout):
        return -dout


class Exp(Function):
    """out = e^a.   da = dout * out (saved: the output is its own derivative)."""

    def forward(self, a):
        self.out = np.exp(a)
        return self.out

    def backward(self, dout):
        return dout * self.out


class Log(Function):
    """out = ln(a).   da = dout / a. (log of 0 is -inf, of a negative number NaN, as NumPy.)"""

    def forward(self, a):
        self.a = a
        return np.log(a)

    def backward(self, dout):
        return dout / self.a


class Sqrt(Function):
    """out = sqrt(a).   da = dout / (2 * out)."""

    def forward(self, a):
        self.out = np.sqrt(a)
        return self.out

    def backward(self, dout):
        return dout / (2 * self.out)


class Cos(Function):
    """out = cos(a).   da = -dout * sin(a) (RoPE's tables, the book's Llama 3 / Qwen3 code)."""

    def forward(self, a):
        self.a = a
        return np.cos(a)

    def backward(self, dout):
        return -dout * np.sin(self.a)


class Sin(Function):
    """out = sin(a).   da = dout * cos(a)."""

    def forward(self, a):
        self.a = a
        return np.sin(a)

    def backward(self, dout):
        return dout * np.cos(self.a)


class Tanh(Function):
    """out = tanh(a).   da = dout * (1 - out^2)."""

    def forward(self, a):
        self.out = np.tanh(a)
        return self.out

    def backward(self, dout):
        return dout * (1 - self.out * self.out)


class Abs(Function):
    """out = |a|.   da = dout * sign(a) (0 at a == 0, as PyTorch)."""

    def forward(self, a):
        self.a = a
        return np.abs(a)

    def backward(self, dout):
        return dout * np.sign(self.a)


class Relu(Function):
    """out = max(a, 0).   da = dout where a > 0, else 0 (0 at a == 0, as PyTorch)."""

    def forward(self, a):
        self.positive = a > 0
        return np.where(self.positive, a, np.zeros((), dtype=a.dtype))

    def backward(self, dout):
        return np.where(self.positive, dout, np.zeros((), dtype=dout.dtype))


class Clamp(Function):
    """out = min(max(a, low), high).   da = dout where low <= a <= high, else 0 (as torch.clamp)."""

    TORCH_NAME = "ClampBackward1"

    def forward(self, a, low, high):
        self.inside = np.ones(a.shape, dtype=bool)
        if low is not None:
            self.inside &= a >= low
        if high is not None:
            self.inside &= a <= high
        return np.clip(a, low, high).astype(a.dtype, copy=False)

    def backward(self, dout):
        return np.where(self.inside, dout, np.zeros((), dtype=dout.dtype))


class Cast(Function):
    """out = a converted to `dtype`.   da = dout converted back to a's dtype."""

    TORCH_NAME = "ToCopyBackward0"  # torch.Tensor.to(dtype)

    def forward(self, a, dtype):
        self.a_dtype = a.dtype
        return a.astype(dtype)

    def backward(self, dout):
        return dout.astype(self.a_dtype)


class RoundToBfloat16(Function):
    """out = a rounded to the nearest bfloat16 (ties to even), held in float32: `a.to(torch.bfloat16)`.

    da = dout converted back to a's dtype: the rounding passes gradients straight through, as a
    cast does in PyTorch (autograd/bf16.py gives the rule). Integer and bool tensors are
    rounded too and become float32 (they carry no gradient).
    """

    def forward(self, a):
        self.a_dtype = a.dtype
        return round_to_bfloat16(a)

    def backward(self, dout):
        return dout.astype(self.a_dtype)


# --------------------------------------------------------------------------------------------
# Reductions
# --------------------------------------------------------------------------------------------


class Sum(Function):
    """out = sum of a over `dim`.   da = dout broadcast back over the summed dimensions."""

    @classmethod
    def torch_name_of(cls, inputs, options):
        """SumBackward0 over all elements, SumBackward1 over `dim` (PyTorch's two overloads)."""
        return "SumBackward0" if options.get("dim") is None else "SumBackward1"

    def forward(self, a, dim, keepdim):
        self.axes = _normalize_dim(dim, a.ndim)
        self.keepdim, self.a_shape = keepdim, a.shape
        return np.sum(a, axis=self.axes, keepdims=keepdim)

    def backward(self, dout):
        dout = _expand_reduced(dout, self.axes, self.keepdim, self.a_shape)
        return np.broadcast_to(dout, self.a_shape).copy()


class Mean(Function):
    """out = mean of a over `dim` (n elements each).   da = dout / n, broadcast back.

    The mean of an integer tensor is float32, never float64.
    """

    @classmethod
    def torch_name_of(cls, inputs, options):
        """MeanBackward0 over all elements, MeanBackward1 over `dim` (PyTorch's two overloads)."""
        return "MeanBackward0" if options.get("dim") is None else "MeanBackward1"

    def forward(self, a, dim, keepdim):
        self.axes = _normalize_dim(dim, a.ndim)
        self.keepdim, self.a_shape = keepdim, a.shape
        self.count = int(np.prod([a.shape[i] for i in self.axes])) if self.axes else 1
        return np.mean(a, axis=self.axes, keepdims=keepdim, dtype=_float_result_dtype(a))

    def backward(self, dout):
        dout = _expand_reduced(dout, self.axes, self.keepdim, self.a_shape)
        return np.broadcast_to(dout / dout.dtype.type(self.count), self.a_shape).copy()


class Var(Function):
    """out = sum((a - mean)^2) / (n - correction) over `dim`.

    da = dout * 2 (a - mean) / (n - correction). correction=1 is the unbiased estimate (PyTorch's
    default), correction=0 the biased one used by layer norm.
    """

    def forward(self, a, dim, keepdim, correction):
        a = a.astype(_float_result_dtype(a), copy=False)  # as Mean: integers give float32
        self.axes = _normalize_dim(dim, a.ndim)
        self.keepdim, self.a_shape = keepdim, a.shape
        count = int(np.prod([a.shape[i] for i in self.axes])) if self.axes else 1
        self.divisor = a.dtype.type(max(count - correction, 0))
        self.centered = a - np.mean(a, axis=self.axes, keepdims=True)
        return np.sum(self.centered * self.centered, axis=self.axes, keepdims=keepdim) / self.divisor

    def backward(self, dout):
        dout = _expand_reduced(dout, self.axes, self.keepdim, self.a_shape)
        return dout * (2 * self.centered / self.divisor)


class Cumsum(Function):
    """out[..., i, ...] = a[..., 0, ...] + ... + a[..., i, ...] along `axis` (torch.cumsum).

    da = the cumulative sum of dout taken from the end: da_j = sum over i >= j of dout_i.
    """

    def forward(self, a, axis):
        self.axis = axis
        return np.cumsum(a, axis=axis, dtype=a.dtype if a.dtype.kind == "f" else np.int64)

    def backward(self, dout):
        reversed_dout = np.flip(dout, axis=self.axis)
        return np.flip(np.cumsum(reversed_dout, axis=self.axis), axis=self.axis)


class Max(Function):
    """out = max of a over `dim` (amax).   da = dout at the maximum, split evenly among ties.

    `min` uses the same rule on -a (see `Tensor.min`).
    """

    @classmethod
    def torch_name_of(cls, inputs, options):
        """MaxBackward1 over all elements, MaxBackward0 over `dim` (PyTorch's numbering)."""
        return "MaxBackward1" if options.get("dim") is None else "MaxBackward0"

    def forward(self, a, dim, keepdim):
        if a.size == 0:
            raise ValueError(f"max/min of an empty tensor (shape {a.shape}) has no value")
        self.axes = _normalize_dim(dim, a.ndim)
        self.keepdim, self.a = keepdim, a
        self.out = np.max(a, axis=self.axes, keepdims=True)
        return self.out if keepdim else np.squeeze(self.out, axis=self.axes)

    def backward(self, dout):
        dout = _expand_reduced(dout, self.axes, self.keepdim, self.a.shape)
        winners = (self.a == self.out).astype(dout.dtype)
        winners /= np.sum(winners, axis=self.axes, keepdims=True)
        return dout * winners


# --------------------------------------------------------------------------------------------
# Matrix product
# --------------------------------------------------------------------------------------------


class Matmul(Function):
    """out = a @ b with NumPy's matmul rules (batch dimensions broadcast; 1-D operands allowed).

    da = dout @ b^T, db = a^T @ dout (each summed over batch dimensions that were broadcast).
    A 1-D `a` is treated as a row (1, n) and a 1-D `b` as a column (n, 1), then the added
    dimension is removed again, as NumPy and PyTorch do.

    NOTE: the common case in a GPT, (B, T, C) @ (C, C_out) with a 2-D weight, computes the
    weight's gradient as one large 2-D product over all B*T rows instead of a batched product
    followed by a sum: that is one BLAS call on contiguous float32 data.
    """

    @classmethod
    def torch_name_of(cls, inputs, options):
        """The op PyTorch's matmul dispatches to: mm (2-D @ 2-D), dot, mv, or a batched product
        folded into mm/bmm and viewed back (`_unsafe_view`) for 3-D and more."""
        a, b = inputs[0].ndim, inputs[1].ndim
        if max(a, b) > 2:
            return "UnsafeViewBackward0"
        return {(2, 2): "MmBackward0", (1, 1): "DotBackward0", (2, 1): "MvBackward0"}.get((a, b), "SqueezeBackward4")

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes {a.shape} and {b.shape}")
        inner_a = a.shape[-1]
        inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if inner_a != inner_b:
            raise ValueError(
                f"matmul: shapes {a.shape} and {b.shape} are not aligned: a's last dimension "
                f"({inner_a}) must equal b's {'only' if b.ndim == 1 else 'second-to-last'} dimension ({inner_b})"
            )
        if a.ndim > 2 and b.ndim > 2:
            try:
                np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
            except ValueError:
                raise ValueError(
                    f"matmul: batch dimensions of {a.shape} and {b.shape} cannot be broadcast together"
                ) from None
        self.a, self.b = a, b
        return np.matmul(a, b)

    def backward(self, dout):
        a, b = self.a, self.b
        # Give 1-D operands their matrix shape back: a (n,) -> (1, n), b (n,) -> (n, 1).
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        if a.ndim == 1 or b.ndim == 1:
            # Put back the dimensions the 1-D operands lost: (..., n, m); a 0-d dout for vector @ vector.
            batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
            dout = dout.reshape(batch + (a2.shape[-2], b2.shape[-1]))
        da = db = None
        if self.needs_input_grad[0]:
            da = np.matmul(dout, np.swapaxes(b2, -1, -2))  # (..., n, m) @ (..., m, k) -> (..., n, k)
            da = unbroadcast(da, a2.shape).reshape(a.shape)
        if self.needs_input_grad[1]:
            if b2.ndim == 2 and a2.ndim > 2:
                # (B, T, C) @ (C, K): fold batch and tokens into one matrix product.
                rows = a2.reshape(-1, a2.shape[-1])
                db = rows.T @ dout.reshape(-1, dout.shape[-1])
            else:
                db = unbroadcast(np.matmul(np.swapaxes(a2, -1, -2), dout), b2.shape)
            db = db.reshape(b.shape)
        return da, db


# --------------------------------------------------------------------------------------------
# Shape operations
# --------------------------------------------------------------------------------------------


class Reshape(Function):
    """out = a viewed with a new shape (same elements in the same order).   da = dout reshaped back."""

    @classmethod
    def torch_name_of(cls, inputs, options):
        """ViewBackward0 for a contiguous tensor (view/reshape/flatten), UnsafeViewBackward0 when
        PyTorch's reshape has to copy first."""
        return "ViewBackward0" if inputs[0].data.flags.c_contiguous else "UnsafeViewBackward0"

    def forward(self, a, shape):
        self.a_shape = a.shape
        try:
            return a.reshape(shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {a.shape} ({a.size} elements) into shape {shape}") from None

    def backward(self, dout):
        return dout.reshape(self.a_shape)


class Permute(Function):
    """out = a with its dimensions reordered by `dims`.   da = dout with the inverse order."""

    def forward(self, a, dims):
        self.inverse = tuple(np.argsort(dims))
        return np.transpose(a, dims)

    def backward(self, dout):
        return np.transpose(dout, self.inverse)


class Unsqueeze(Reshape):
    """`Reshape` that inserts a dimension of size 1 (torch.unsqueeze; its own name in a graph)."""

    TORCH_NAME = "UnsqueezeBackward0"

    @classmethod
    def torch_name_of(cls, inputs, options):
        return cls.TORCH_NAME


class Squeeze(Unsqueeze):
    """`Reshape` that removes dimensions of size 1 (torch.squeeze; its own name in a graph)."""

    TORCH_NAME = "SqueezeBackward0"


class Transpose(Permute):
    """`Permute` that swaps two dimensions (torch.transpose; its own name in a graph)."""

    TORCH_NAME = "TransposeBackward0"


class Expand(Function):
    """out = a broadcast to `shape` (a read-only view).   da = dout summed over the expanded dims."""

    def forward(self, a, shape):
        self.a_shape = a.shape
        try:
            return np.broadcast_to(a, shape)
        except ValueError:
            raise ValueError(f"expand: cannot expand shape {a.shape} to {shape} (only size-1 dimensions can grow)") from None

    def backward(self, dout):
        return unbroadcast(dout, self.a_shape)


class GetItem(Function):
    """out = a[index] for slices, ints, None, Ellipsis, integer arrays and boolean masks.

    da = zeros with dout scattered back to the selected positions. With integer arrays an element
    may be selected several times; `np.add.at` adds every copy's gradient (plain assignment would
    keep only the last one).
    """

    @classmethod
    def torch_name_of(cls, inputs, options):
        """The last op PyTorch's indexing applies: IndexBackward0 for integer arrays and masks,
        else Select (an int), Slice (a slice that selects less than all) or Unsqueeze (None)."""
        index = options["index"]
        if _is_advanced_index(index):
            return "IndexBackward0"
        parts = index if isinstance(index, tuple) else (index,)
        name = "SliceBackward0" if not isinstance(index, tuple) else "AliasBackward0"
        dim = 0
        for position, part in enumerate(parts):
            if part is None:
                name = "UnsqueezeBackward0"
            elif part is Ellipsis:  # skip to the dimensions the parts after it index
                dim = inputs[0].ndim - sum(1 for later in parts[position + 1:] if later is not None)
                continue
            elif isinstance(part, slice):
                if part.indices(inputs[0].shape[dim]) != (0, inputs[0].shape[dim], 1):
                    name = "SliceBackward0"
            else:
                name = "SelectBackward0"
            dim += part is not None
        return name

    def forward(self, a, index):
        self.a_shape, self.a_dtype, self.index = a.shape, a.dtype, index
        self.advanced = _is_advanced_index(index)
        return a[index]

    def backward(self, dout):
        da = np.zeros(self.a_shape, dtype=self.a_dtype)
        if self.advanced:
            np.add.at(da, self.index, dout)
        else:
            da[self.index] = dout
        return da


def _is_advanced_index(index) -> bool:
    """True when `index` holds an array or list (NumPy 'advanced' indexing, may repeat elements)."""
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(part, (np.ndarray, list)) for part in parts)


class Cat(Function):
    """out = the inputs joined along `dim`.   Each input's gradient is its slice of dout."""

    def forward(self, *arrays, dim):
        self.axis = _normalize_dim(dim, arrays[0].ndim)[0]
        self.boundaries = np.cumsum([array.shape[self.axis] for array in arrays])[:-1]
        return np.concatenate(arrays, axis=self.axis)

    def backward(self, dout):
        pieces = np.split(dout, self.boundaries, axis=self.axis)
        return tuple(
            piece.copy() if needed else None for piece, needed in zip(pieces, self.needs_input_grad)
        )


class Pad(Function):
    """out = a with `widths` (before, after) of `value` around each dimension (F.pad, mode "constant").

    da = the slice of dout where a sits. A negative width crops, as in PyTorch.
    """

    TORCH_NAME = "ConstantPadNdBackward0"

    def forward(self, a, widths, value):
        grow = [(max(before, 0), max(after, 0)) for before, after in widths]
        padded = np.pad(a, grow, constant_values=a.dtype.type(value)) if any(sum(pair) for pair in grow) else a.copy()
        # Crops (negative widths) cut the padded array; the rest picks a back out in backward.
        self.inner = tuple(slice(max(before, 0), padded.shape[d] - max(after, 0)) for d, (before, after) in enumerate(widths))
        self.crop = tuple(slice(max(-before, 0), padded.shape[d] - max(-after, 0)) for d, (before, after) in enumerate(widths))
        self.padded_shape, self.a_shape = padded.shape, a.shape
        return padded[self.crop]

    def backward(self, dout):
        full = np.zeros(self.padded_shape, dtype=dout.dtype)
        full[self.crop] = dout
        return full[self.inner].copy()


class Stack(Cat):
    """`Cat` of tensors given a new dimension each (torch.stack; its own name in a graph)."""

    TORCH_NAME = "StackBackward0"


class MaskedFill(Function):
    """out = a with `value` wherever `mask` is True (mask broadcast to a's shape).

    da = dout where the mask is False and exactly 0 where it is True: a filled position no longer
    depends on a. Used to hide future tokens with -inf before a softmax (book ch. 3.5.1).
    """

    def forward(self, a, mask, value):
        self.mask = mask
        return np.where(mask, a.dtype.type(value), a)

    def backward(self, dout):
        return np.where(self.mask, np.zeros((), dtype=dout.dtype), dout)


# --------------------------------------------------------------------------------------------
# Gather, copy and item assignment (torch.gather, clone, t[i] = v)
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


class TopkGather(Gather):
    """`Gather` of the k largest values (torch.topk's values; its own name in a graph)."""

    TORCH_NAME = "TopkBackward0"


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

    TORCH_NAME = "CopySlices"  # PyTorch's node for a write into a slice

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


__all__ = [
    "Add", "Sub", "Mul", "Div", "Pow", "PowScalar", "Maximum", "Where", "Neg", "Exp", "Log",
    "Sqrt", "Tanh", "Sin", "Cos", "Abs", "Relu", "Clamp", "Cast", "Sum", "Mean", "Var", "Cumsum", "Max", "Matmul",
    "Reshape", "Unsqueeze", "Squeeze", "Permute", "Transpose", "Expand", "GetItem", "Cat", "Stack", "Pad",
    "MaskedFill", "Gather", "TopkGather", "Clone", "SetItem",
    "unbroadcast",
]
