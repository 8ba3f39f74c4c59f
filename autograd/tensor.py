"""`Tensor`: an array that records the operations applied to it, and can be differentiated.

A `Tensor` wraps a NumPy array (`.data`). When an operation is applied to tensors that require
gradients, the result remembers the `Function` that made it (`.grad_fn`), and that function
remembers its inputs and whatever its backward rule needs. `loss.backward()` hands the graph to
the backward walk (`autograd/backward.py`), which calls each function's `backward` once and
accumulates the gradients of the leaves into their `.grad`.

The whole class is here, in one body, as minitorch writes its tensor: every method is a few lines
that check their arguments and call a `Function` (`Add.apply(self, other)`). The primitive
functions live in `ops.py`, the fused neural-network ones (softmax, sigmoid, ...) behind
`autograd.kernels` (a plain reference version or a fast one). The methods are grouped: the
gradient, properties and printing, arithmetic, comparisons, elementwise functions, reductions,
shape, indexing, in-place changes, conversion, Python's protocols.

This is reverse-mode automatic differentiation as in PyTorch's autograd (Paszke et al. 2017,
"Automatic differentiation in PyTorch") and micrograd, on whole arrays instead of scalars.

Shape letters used in comments across the engine: B batch, T tokens, C channels, H heads,
D head size, V vocabulary.

References: torch.Tensor (names and semantics: `dim=`, `keepdim=`, in-place rules); minitorch's
`tensor.py`.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from autograd import kernels
from autograd import random as _random
from autograd.backward import _initial_gradient, _run_backward
from autograd.bf16 import is_bfloat16, round_to_bfloat16
from autograd.device import CPU, check_device, device
from autograd.function import is_grad_enabled
from autograd.ops import (
    Abs, Add, Clamp, Clone, Cos, Cumsum, Div, Exp, Expand, Gather, GetItem, Log, MaskedFill, Matmul, Max,
    Maximum, Mean, Mul, Neg, Permute, Pow, PowScalar, Relu, Reshape, SetItem, Sin, Sqrt, Squeeze, Sub, Sum,
    Tanh, TopkGather, Transpose, Unsqueeze, Var, _cast, _gather_index, _normalize_dim, _promote,
)
from autograd.printing import DType, format_tensor, set_printoptions
from autograd.size import Size

# --------------------------------------------------------------------------------------------
# Tensor
# --------------------------------------------------------------------------------------------

_VALID_KINDS = "biuf"  # bool, signed int, unsigned int, float: the dtypes a Tensor may hold
_KIND_RANK = {"b": 0, "u": 1, "i": 1, "f": 2}  # PyTorch's categories: an in-place result may not move up

MaxMin = namedtuple("MaxMin", ["values", "indices"])
MaxMin.__doc__ = "Result of `Tensor.max(dim)` / `Tensor.min(dim)`: values and their int64 indices."
TopK = namedtuple("TopK", ["values", "indices"])
TopK.__doc__ = "Result of `Tensor.topk`: the k values (differentiable) and their int64 indices."


class HookHandle:
    """Returned by `Tensor.register_hook` and `register_post_accumulate_grad_hook`; `remove()` unregisters the hook."""

    def __init__(self, hooks: list, hook):
        self._hooks = hooks
        self._hook = hook

    def remove(self) -> None:
        """Unregister the hook (doing it twice is harmless)."""
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


class Gradient(np.ndarray):
    """The type of `Tensor.grad`: a plain `np.ndarray` plus the few torch spellings the book uses.

    PyTorch makes `.grad` a tensor; minigpt keeps it an array (DESIGN.md: the optimizers' hot path
    works on plain arrays), of this thin subclass so that the book's gradient inspection runs
    unchanged:

        param.grad.abs().mean().item()          # chapter 4, print_gradients
        param.grad.data.flatten().max()         # appendix D, find_highest_gradient

    A `Gradient` is a *view* of the array the backward pass produced (made once per backward,
    no copy), so everything NumPy does with it is unchanged and in place updates reach it.
    Arithmetic on it returns plain `np.ndarray` / NumPy scalars (see `__array_wrap__`), so a
    computation never drags the subclass along.

    NOTE: `.data` is the array itself, as torch's `grad.data`, not NumPy's raw memory buffer.

    Why not a Tensor: the optimizers, gradient clipping and the engine's accumulation all work on
    plain arrays in place (DESIGN.md); a subclass keeps every one of them unchanged. Its cost,
    measured side by side in one process on a loaded 2-core machine: the char config's training
    step (forward, backward, AdamW) with `.grad` a Gradient vs a plain array, median ratio 0.97
    (no difference beyond noise); AdamW.step on the mid config 540 vs 558 ms (median of 55). The
    `grad` property costs well under a microsecond per parameter and backward.

    References: torch.Tensor.grad; NumPy "Subclassing ndarray" (view casting, __array_wrap__).
    """

    def __array_wrap__(self, array, context=None, return_scalar=False):
        # Results of ufuncs and reductions are plain arrays (or NumPy scalars), never Gradients.
        array = array.view(np.ndarray)
        return array[()] if return_scalar else array

    def __repr__(self) -> str:
        """As PyTorch prints a gradient: `tensor([-0.0898])` (appendix A prints `w1.grad`)."""
        return format_tensor(self.view(np.ndarray))

    __str__ = __repr__

    @property
    def data(self) -> "Gradient":
        """The gradient itself (torch's `param.grad.data`)."""
        return self

    def reshape(self, *shape, **kwargs) -> np.ndarray:
        """`np.ndarray.reshape`, returning a plain array (a view when possible).

        NOTE: an optimizer reshapes each gradient to 1-D and then runs NumPy ufuncs on chunks of
        it (minigpt.optim.AdamW). A ufunc call with a subclass operand costs ~2 us more (the Python
        `__array_wrap__`), which over the ~2,000 chunks of a 124M model would add ~8 ms per step;
        with a plain reshape the loop runs exactly as on the plain array.
        """
        return self.view(np.ndarray).reshape(*shape, **kwargs)

    def abs(self) -> np.ndarray:
        """Elementwise absolute value, a plain array (torch.Tensor.abs)."""
        return np.abs(self)

    def numel(self) -> int:
        """The number of elements (torch.Tensor.numel)."""
        return self.size

    def dim(self) -> int:
        """The number of dimensions (torch.Tensor.dim)."""
        return self.ndim


class Tensor:
    """An n-dimensional array that can record the operations applied to it and be differentiated.

    Attributes:
        data: the values, a plain `np.ndarray` (bool, integer or floating point).
        grad: None until a backward pass reaches this tensor, then an `np.ndarray` (of the thin
            subclass `Gradient`, which adds torch's `.abs()` and `.data`) of the same shape and dtype holding d(loss)/d(this tensor). Leaves accumulate it over several
            backward passes (set it to None, or call an optimizer's `zero_grad`, between steps);
            non-leaf tensors keep it only after `retain_grad()`.
        requires_grad: whether gradients flow to this tensor. Only floating-point tensors can
            require gradients.
        grad_fn: the `Function` that computed this tensor, or None for a leaf (a tensor made by the
            user, or any result computed without gradient).

    Args:
        data: an array, a nested list of numbers, a number, or another Tensor (its data is taken).
        requires_grad: whether to record operations on this tensor for backward.
        dtype: the NumPy dtype to convert `data` to; None keeps an array's dtype and makes Python
            floats float32 and Python ints int64 (as `torch.tensor`).

    Raises:
        TypeError: `data` is not numeric (strings, objects, None), or `requires_grad=True` for a
            tensor that is not floating point.

    References: torch.Tensor; PyTorch autograd semantics for `grad`, `requires_grad`, leaves.
    """

    __slots__ = ("data", "_grad", "requires_grad", "grad_fn", "_retains_grad", "_hooks", "_post_accumulate_grad_hooks",
                 "_version", "__weakref__")

    # Make NumPy defer to Tensor in mixed expressions (`array + tensor` calls Tensor.__radd__).
    __array_ufunc__ = None

    # ---- construction -----------------------------------------------------------------------
    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data = _to_array(data, dtype, argument="data")
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"requires_grad=True needs a floating-point tensor, got dtype {self.data.dtype}"
            )
        self.requires_grad = bool(requires_grad)
        self._grad = None
        self.grad_fn = None
        self._retains_grad = False
        self._hooks = None
        self._post_accumulate_grad_hooks = None
        self._version = 0

    @staticmethod
    def _make(array: np.ndarray, requires_grad: bool) -> "Tensor":
        """Wrap an array computed by an operation, skipping the checks of `__init__` (hot path).

        Always a plain Tensor, never a subclass (an op's result is no Parameter): `Function.apply`
        reaches it as `inputs[0]._make(...)`, because function.py cannot import this file.
        """
        tensor = object.__new__(Tensor)
        tensor.data = array if isinstance(array, np.ndarray) else np.asarray(array)
        tensor.requires_grad = requires_grad
        tensor._grad = None
        tensor.grad_fn = None
        tensor._retains_grad = False
        tensor._hooks = None
        tensor._post_accumulate_grad_hooks = None
        tensor._version = 0
        return tensor

    # ---- the gradient: .grad ----------------------------------------------------------------
    @property
    def grad(self) -> "Gradient | None":
        """d(loss)/d(self) after a backward pass, or None: a `Gradient`, i.e. an `np.ndarray`.

        Assigning an array (or None) is allowed, as in PyTorch; the array is stored as a
        `Gradient` view of itself (no copy), so it keeps the book's `.abs()` / `.data` spelling.
        """
        return self._grad

    @grad.setter
    def grad(self, value) -> None:
        if value is None or type(value) is Gradient:
            self._grad = value
        elif isinstance(value, (np.ndarray, np.generic)):
            self._grad = np.asarray(value).view(Gradient)
        elif isinstance(value, Tensor):
            self._grad = value.data.view(Gradient)
        else:
            raise TypeError(f"grad must be None, an np.ndarray or a Tensor, got {type(value).__name__}")

    # ---- properties, Python values and printing ---------------------------------------------
    @property
    def shape(self) -> Size:
        """The shape, a `torch.Size`: a tuple of ints that prints `torch.Size([2, 3])`."""
        return tuple.__new__(Size, self.data.shape)  # NumPy's shape holds ints: no checks needed

    @property
    def ndim(self) -> int:
        """The number of dimensions."""
        return self.data.ndim

    @property
    def dtype(self) -> DType:
        """The dtype of the values: NumPy's, printed as PyTorch's (`torch.float32`; see `DType`)."""
        return DType.of(self.data.dtype)

    def size(self, dim: int | None = None):
        """The shape, a `torch.Size` (PyTorch's `x.size()`), or the length of dimension `dim`."""
        return self.shape if dim is None else self.data.shape[dim]

    def numel(self) -> int:
        """The number of elements (NumPy's `size`)."""
        return self.data.size

    def dim(self) -> int:
        """The number of dimensions (torch.Tensor.dim)."""
        return self.ndim

    @property
    def is_leaf(self) -> bool:
        """True for a tensor not computed by a recorded operation (its gradient is accumulated)."""
        return self.grad_fn is None

    def __len__(self) -> int:
        return len(self.data)

    def item(self):
        """The value of a one-element tensor as a Python number.

        Raises:
            ValueError: the tensor has more than one element.
        """
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def numpy(self) -> np.ndarray:
        """The values as an `np.ndarray`, sharing memory with the tensor (no copy)."""
        return self.data

    def tolist(self):
        """The values as (nested) Python lists."""
        return self.data.tolist()

    def detach(self) -> "Tensor":
        """A new leaf tensor sharing this tensor's data, cut from the graph (no gradient)."""
        return Tensor._make(self.data, False)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        """Set `requires_grad` in place on a leaf and return self (as PyTorch)."""
        if not self.is_leaf:
            raise RuntimeError("requires_grad_ can only change leaf tensors, this one has a grad_fn")
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(f"requires_grad=True needs a floating-point tensor, got {self.dtype}")
        self.requires_grad = requires_grad
        return self

    def __repr__(self) -> str:
        """As PyTorch prints it: `tensor([0.4300, 0.1500], grad_fn=<MulBackward0>)` (autograd/printing.py)."""
        grad_fn = self.grad_fn
        return format_tensor(self.data, self.requires_grad, None if grad_fn is None else grad_fn.torch_name)

    def __bool__(self) -> bool:
        return bool(self.data)

    # ---- backward and hooks -----------------------------------------------------------------
    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in `.grad` after backward (leaves always keep it)."""
        if not self.requires_grad:
            raise RuntimeError("retain_grad() on a tensor that does not require grad")
        self._retains_grad = True

    def register_hook(self, hook) -> HookHandle:
        """Call `hook(grad)` each time the gradient of this tensor is computed during backward.

        The hook sees the gradient as a plain array before it is accumulated or passed on; if it
        returns an array (same shape), that array replaces the gradient.

        Returns:
            A handle whose `remove()` unregisters the hook.

        Raises:
            RuntimeError: the tensor does not require gradients.

        References: torch.Tensor.register_hook.
        """
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that does not require grad")
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(hook)
        return HookHandle(self._hooks, hook)

    def register_post_accumulate_grad_hook(self, hook) -> HookHandle:
        """Call `hook(self)` each time backward has added this leaf's gradient into `.grad`.

        A leaf's gradient is complete for that backward when the walk reaches the leaf (every
        operation that used it has passed its share on), so the hook sees the final `.grad` of
        the pass: data-parallel training uses it to start sending a bucket of gradients while
        backward still runs for the layers below (`minigpt.distributed.GradientBuckets`).
        `autograd.grad` touches no `.grad` and calls no such hook.

        Args:
            hook: a callable taking this tensor; its return value is ignored.

        Returns:
            A handle whose `remove()` unregisters the hook.

        Raises:
            RuntimeError: the tensor does not require gradients, or is not a leaf.

        References: torch.Tensor.register_post_accumulate_grad_hook (PyTorch 2.1).
        """
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that does not require grad")
        if self.grad_fn is not None:
            raise RuntimeError(
                "post accumulate grad hooks cannot be registered on non-leaf tensors: this tensor "
                f"was computed by {self.grad_fn.name}"
            )
        if self._post_accumulate_grad_hooks is None:
            self._post_accumulate_grad_hooks = []
        self._post_accumulate_grad_hooks.append(hook)
        return HookHandle(self._post_accumulate_grad_hooks, hook)

    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Compute the gradient of this tensor with respect to every leaf that requires grad.

        Walks the graph in reverse topological order (iteratively, so even a 100,000-op chain
        does not reach Python's recursion limit), calls each operation's backward rule once with
        the total gradient of its output, and adds the gradients of leaves into their `.grad`.

        Args:
            gradient: d(loss)/d(self), same shape as self (array or Tensor). May be omitted only
                for a tensor with one element, where it is 1.
            retain_graph: keep what the operations saved so that backward can run through this
                graph again. By default the graph is freed as the walk goes, which frees memory.

        Raises:
            RuntimeError: this tensor does not require grad; `gradient` omitted for a tensor with
                more than one element; the graph was already freed by an earlier backward; a
                backward rule returned a gradient of the wrong shape or dtype.
            ValueError: `gradient` has a different shape than this tensor.

        Nothing but the walk runs here: the next frame is `_run_backward` (autograd/backward.py),
        the one after it an operation's `backward`.

        References: torch.Tensor.backward; Griewank & Walther, "Evaluating Derivatives" (2008).
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of the computation "
                "had requires_grad=True, or it was computed under no_grad()"
            )
        gradient = _initial_gradient(self, gradient)
        _run_backward([self], [gradient], retain_graph)

    # ---- inspection -------------------------------------------------------------------------
    def graph(self) -> str:
        """The graph that computed this tensor as an indented tree, one line per node.

        Each line shows the operation (or 'leaf'), the shape and the dtype; a node already shown
        higher up is printed once more as '(see above)' without its inputs.

        Example:
            >>> print((a @ b).sum().graph())
            Sum  shape=()  float32
              Matmul  shape=(2, 4)  float32
                leaf  shape=(2, 3)  float32  requires_grad
                leaf  shape=(3, 4)  float32  requires_grad
        """
        lines = []
        seen = set()
        stack = [(self, 0)]
        while stack:
            node, depth = stack.pop()
            if node.grad_fn is None:
                label = "leaf"
            elif node.grad_fn.released:
                label = f"{node.grad_fn.name} (graph freed)"
            else:
                label = node.grad_fn.name
            flags = "  requires_grad" if node.is_leaf and node.requires_grad else ""
            repeat = "  (see above)" if id(node) in seen and node.grad_fn is not None else ""
            lines.append(f"{'  ' * depth}{label}  shape={node.shape}  {node.dtype}{flags}{repeat}")
            if repeat or node.grad_fn is None:
                continue
            seen.add(id(node))
            for child in reversed(node.grad_fn.inputs):
                stack.append((child, depth + 1))
        return "\n".join(lines)

    # ---- arithmetic: operators over the primitive ops (ops.py), broadcasting as NumPy --------
    # A Python number takes self's dtype (`x * 0.5` stays float32); mixed dtypes meet as in
    # PyTorch (`_promote`), so that nothing silently becomes float64.
    def __add__(self, other) -> "Tensor":
        """self + other (`Add`): da = dout, db = dout, each summed back over broadcast dimensions."""
        return Add.apply(*_promote(self, as_tensor(other, like=self)))

    def __radd__(self, other) -> "Tensor":
        """other + self, for a number or array on the left (`Add`)."""
        return Add.apply(*_promote(as_tensor(other, like=self), self))

    def __sub__(self, other) -> "Tensor":
        """self - other (`Sub`): da = dout, db = -dout."""
        return Sub.apply(*_promote(self, as_tensor(other, like=self)))

    def __rsub__(self, other) -> "Tensor":
        """other - self, for a number or array on the left (`Sub`)."""
        return Sub.apply(*_promote(as_tensor(other, like=self), self))

    def __mul__(self, other) -> "Tensor":
        """self * other (`Mul`): da = dout * b, db = dout * a (the product rule)."""
        return Mul.apply(*_promote(self, as_tensor(other, like=self)))

    def __rmul__(self, other) -> "Tensor":
        """other * self, for a number or array on the left (`Mul`)."""
        return Mul.apply(*_promote(as_tensor(other, like=self), self))

    def __truediv__(self, other) -> "Tensor":
        """self / other (`Div`); integers divide into float32, as PyTorch's true division."""
        return Div.apply(*_promote(self, as_tensor(other, like=self), true_division=True))

    def __rtruediv__(self, other) -> "Tensor":
        """other / self, for a number or array on the left (`Div`)."""
        return Div.apply(*_promote(as_tensor(other, like=self), self, true_division=True))

    def __matmul__(self, other) -> "Tensor":
        """self @ other, the matrix product with NumPy's rules (`Matmul`)."""
        return Matmul.apply(*_promote(self, as_tensor(other, like=self)))

    def __rmatmul__(self, other) -> "Tensor":
        """other @ self, for an array on the left (`Matmul`)."""
        return Matmul.apply(*_promote(as_tensor(other, like=self), self))

    def __pow__(self, exponent) -> "Tensor":
        """self ** exponent: a number exponent uses `PowScalar` (fast small powers), a tensor `Pow`."""
        if isinstance(exponent, (int, float)) and not isinstance(exponent, bool):
            return PowScalar.apply(self, exponent=exponent)
        return Pow.apply(*_promote(self, as_tensor(exponent, like=self)))

    def __rpow__(self, base) -> "Tensor":
        """base ** self for a number base (`Pow`)."""
        return Pow.apply(*_promote(as_tensor(base, like=self), self))

    def __neg__(self) -> "Tensor":
        """-self (`Neg`): da = -dout."""
        return Neg.apply(self)

    def matmul(self, other) -> "Tensor":
        """The matrix product self @ other (torch.Tensor.matmul; see `Matmul`)."""
        return Matmul.apply(*_promote(self, as_tensor(other, like=self)))

    def dot(self, other) -> "Tensor":
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

    # ---- comparisons: bool tensors without gradient ----------------------------------------
    def __lt__(self, other) -> "Tensor":
        """Elementwise self < other; a bool tensor without gradient."""
        return Tensor._make(np.less(self.data, _array_of(other)), False)

    def __le__(self, other) -> "Tensor":
        """Elementwise self <= other; a bool tensor without gradient."""
        return Tensor._make(np.less_equal(self.data, _array_of(other)), False)

    def __gt__(self, other) -> "Tensor":
        """Elementwise self > other; a bool tensor without gradient."""
        return Tensor._make(np.greater(self.data, _array_of(other)), False)

    def __ge__(self, other) -> "Tensor":
        """Elementwise self >= other; a bool tensor without gradient."""
        return Tensor._make(np.greater_equal(self.data, _array_of(other)), False)

    def __eq__(self, other) -> "Tensor":
        """Elementwise self == other; a bool tensor without gradient (as PyTorch, not one bool)."""
        return Tensor._make(np.equal(self.data, _array_of(other)), False)

    def __ne__(self, other) -> "Tensor":
        """Elementwise self != other; a bool tensor without gradient."""
        return Tensor._make(np.not_equal(self.data, _array_of(other)), False)

    __hash__ = object.__hash__  # comparisons return tensors, so keep identity hashing

    # ---- elementwise functions --------------------------------------------------------------
    def exp(self) -> "Tensor":
        """e ** self (`Exp`): da = dout * out."""
        return Exp.apply(self)

    def log(self) -> "Tensor":
        """Natural logarithm (`Log`): da = dout / a. log(0) is -inf, of a negative number NaN."""
        return Log.apply(self)

    def sqrt(self) -> "Tensor":
        """Square root (`Sqrt`): da = dout / (2 * out)."""
        return Sqrt.apply(self)

    def tanh(self) -> "Tensor":
        """Hyperbolic tangent (`Tanh`): da = dout * (1 - out^2)."""
        return Tanh.apply(self)

    def abs(self) -> "Tensor":
        """Absolute value (`Abs`): da = dout * sign(a), 0 at a == 0 as PyTorch."""
        return Abs.apply(self)

    def relu(self) -> "Tensor":
        """max(self, 0) (`Relu`): da = dout where a > 0, else 0."""
        return Relu.apply(self)

    # ---- the book's Llama 3 / Qwen3 code (ch. 5 bonus): RoPE tables, RMSNorm, GQA ----------
    def cos(self) -> "Tensor":
        """Cosine (`Cos`): da = -dout * sin(a)."""
        return Cos.apply(self)

    def sin(self) -> "Tensor":
        """Sine (`Sin`): da = dout * cos(a)."""
        return Sin.apply(self)

    def rsqrt(self) -> "Tensor":
        """1 / sqrt(self) (torch.Tensor.rsqrt; the book's Qwen3 RMSNorm), from `Sqrt` and a division."""
        return 1.0 / self.sqrt()

    def pow(self, exponent) -> "Tensor":
        """self ** exponent (torch.Tensor.pow; `x.pow(2)` in the book's Qwen3 RMSNorm)."""
        return self ** exponent

    def __and__(self, other) -> "Tensor":
        """Element-wise logical and of bool tensors (`mask_a & mask_b`), no gradient."""
        return Tensor._make(np.logical_and(self.data, other.data if isinstance(other, Tensor) else other), False)

    def __or__(self, other) -> "Tensor":
        """Element-wise logical or of bool tensors (`mask_a | mask_b`), no gradient."""
        return Tensor._make(np.logical_or(self.data, other.data if isinstance(other, Tensor) else other), False)

    def __invert__(self) -> "Tensor":
        """Element-wise logical not of a bool tensor (`~mask`), no gradient."""
        return Tensor._make(np.logical_not(self.data), False)

    def sigmoid(self) -> "Tensor":
        """1 / (1 + exp(-x)), elementwise (torch.Tensor.sigmoid; appendix A.3), stable for large
        |x|: the fused `Sigmoid` of the kernels chosen by `autograd.kernels` (reference or fast)."""
        return kernels.get("Sigmoid").apply(self)

    def softmax(self, dim: int) -> "Tensor":
        """Softmax along `dim` (torch.Tensor.softmax): non-negative values that sum to 1, computed
        stably; -inf entries get probability 0. The fused `Softmax` of the kernels chosen by
        `autograd.kernels` (see autograd.functional.softmax). A 0-d tensor gives 1.0, as PyTorch.

        Raises:
            TypeError: `dim` is not an int, or the tensor is not floating point.
            IndexError: `dim` out of range.
        """
        return _softmax("Softmax", "softmax", self, dim)

    def clamp(self, min=None, max=None) -> "Tensor":  # noqa: A002 - PyTorch's argument names
        """Limit values to [min, max] (either may be None), as torch.clamp (`Clamp`).

        Raises:
            ValueError: neither min nor max is given.
        """
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        return Clamp.apply(self, low=min, high=max)

    def maximum(self, other) -> "Tensor":
        """Elementwise maximum with a tensor or number, as torch.maximum (`Maximum`; a tie splits
        the gradient half and half)."""
        return Maximum.apply(*_promote(self, as_tensor(other, like=self)))

    def minimum(self, other) -> "Tensor":
        """Elementwise minimum, as torch.minimum: -maximum(-self, -other)."""
        return -(-self).maximum(-as_tensor(other, like=self))

    # ---- reductions -------------------------------------------------------------------------
    def sum(self, dim=None, keepdim: bool = False) -> "Tensor":
        """Sum over `dim` (int, tuple or None for all), as torch.sum (`Sum`)."""
        return Sum.apply(self, dim=dim, keepdim=keepdim)

    def mean(self, dim=None, keepdim: bool = False) -> "Tensor":
        """Mean over `dim` (int, tuple or None for all), as torch.mean; float32 for integer input."""
        return Mean.apply(self, dim=dim, keepdim=keepdim)

    def var(self, dim=None, unbiased: bool = True, keepdim: bool = False) -> "Tensor":
        """Variance over `dim`: divides by n - 1 when `unbiased` (PyTorch's default), else by n."""
        return Var.apply(self, dim=dim, keepdim=keepdim, correction=1 if unbiased else 0)

    def max(self, dim=None, keepdim: bool = False):
        """Largest value: over everything when `dim` is None (a tensor), else `(values, indices)`
        along the int `dim`, as torch.max. The gradient is split evenly among tied maxima."""
        if dim is None:
            return Max.apply(self, dim=None, keepdim=False)
        values = Max.apply(self, dim=dim, keepdim=keepdim)
        indices = np.argmax(self.data, axis=dim)
        if keepdim:
            indices = np.expand_dims(indices, dim)
        return MaxMin(values, Tensor._make(indices.astype(np.int64), False))

    def min(self, dim=None, keepdim: bool = False):
        """Smallest value, as torch.min: -max(-x), with indices when `dim` is given."""
        if dim is None:
            return -Max.apply(-self, dim=None, keepdim=False)
        values = -Max.apply(-self, dim=dim, keepdim=keepdim)
        indices = np.argmin(self.data, axis=dim)
        if keepdim:
            indices = np.expand_dims(indices, dim)
        return MaxMin(values, Tensor._make(indices.astype(np.int64), False))

    def argmax(self, dim=None, keepdim: bool = False) -> "Tensor":
        """Index of the largest value (int64, no gradient), as torch.argmax."""
        result = np.argmax(self.data, axis=dim, keepdims=keepdim)
        return Tensor._make(np.asarray(result, dtype=np.int64), False)

    def topk(self, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> "TopK":  # noqa: A002
        """The k largest (or smallest) values along `dim` and their indices (torch.topk; ch. 5.3.2).

        Returns:
            TopK(values, indices): values differentiable (a Gather of self), indices int64, both
            with size k along `dim`, in descending order for largest=True (ascending for
            largest=False). Among equal values, the one with the lower index comes first.

        Raises:
            ValueError: k outside [0, size of dim].
        """
        axis = _normalize_dim(dim, self.ndim)[0] if self.ndim else None
        length = self.shape[axis] if self.ndim else 1
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= length:
            raise ValueError(f"topk: k must be an int in [0, {length}], got {k!r}")
        if self.ndim == 0:  # as PyTorch: a 0-d input gives 0-d results for k = 1
            flat = self.reshape(1).topk(k, 0, largest, sorted)
            return TopK(flat.values.reshape(()), flat.indices.reshape(())) if k == 1 else flat
        keys = -self.data if largest and self.dtype.kind in "fi" else self.data
        order = np.argsort(keys, axis=axis, kind="stable")
        if largest and self.dtype.kind not in "fi":
            order = np.flip(order, axis=axis)
        indices = np.take(order, np.arange(k), axis=axis).astype(np.int64)
        return TopK(TopkGather.apply(self, index=indices, axis=axis), Tensor._make(indices, False))

    # ---- shape ------------------------------------------------------------------------------
    def reshape(self, *shape) -> "Tensor":
        """The same elements in a new shape; one dimension may be -1 (torch.reshape, `Reshape`)."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Reshape.apply(self, shape=shape)

    def view(self, *shape) -> "Tensor":
        """The same elements in a new shape (torch.Tensor.view); here the same as `reshape`."""
        return self.reshape(*shape)

    def transpose(self, dim0: int, dim1: int) -> "Tensor":
        """Swap two dimensions (torch.transpose), e.g. keys (B, H, T, D) -> (B, H, D, T)."""
        axes = list(range(self.ndim))
        d0 = _normalize_dim(dim0, self.ndim, "dim0")[0]
        d1 = _normalize_dim(dim1, self.ndim, "dim1")[0]
        axes[d0], axes[d1] = axes[d1], axes[d0]
        return Transpose.apply(self, dims=tuple(axes))

    def permute(self, *dims) -> "Tensor":
        """Reorder all dimensions (torch.permute, `Permute`).

        Raises:
            ValueError: `dims` is not a permutation of the dimensions.
        """
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        if len(dims) != self.ndim:
            raise ValueError(f"permute: got {len(dims)} dims {dims} for a tensor with {self.ndim} dimensions")
        normalized = tuple(_normalize_dim(d, self.ndim)[0] for d in dims)
        if sorted(normalized) != list(range(self.ndim)):
            raise ValueError(f"permute: dims {dims} are not a permutation of 0..{self.ndim - 1}")
        return Permute.apply(self, dims=normalized)

    @property
    def T(self) -> "Tensor":  # noqa: N802 - torch's name
        """All dimensions reversed (a matrix transposed), as torch.Tensor.T."""
        return Permute.apply(self, dims=tuple(reversed(range(self.ndim))))

    def unsqueeze(self, dim: int) -> "Tensor":
        """Insert a dimension of size 1 at `dim` (negative counts from the end of the result)."""
        axis = _normalize_dim(dim, self.ndim + 1)[0]
        return Unsqueeze.apply(self, shape=self.shape[:axis] + (1,) + self.shape[axis:])

    def squeeze(self, dim=None) -> "Tensor":
        """Remove dimensions of size 1 (only `dim` when given and of size 1), as torch.squeeze."""
        if dim is None:
            shape = tuple(size for size in self.shape if size != 1)
        else:
            axes = _normalize_dim(dim, self.ndim)
            shape = tuple(size for i, size in enumerate(self.shape) if not (i in axes and size == 1))
        return Squeeze.apply(self, shape=shape)

    def expand(self, *shape) -> "Tensor":
        """Broadcast to a larger shape without copying; -1 keeps a dimension (torch.expand).

        Raises:
            ValueError: fewer dimensions than self, or -1 for a new leading dimension.
        """
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        lead = len(shape) - self.ndim
        if lead < 0:
            raise ValueError(f"expand: target shape {shape} has fewer dimensions than the tensor {self.shape}")
        if -1 in shape[:lead]:
            raise ValueError(f"expand: -1 is not allowed for the new leading dimensions of {shape} (tensor shape {self.shape})")
        shape = tuple(self.shape[i - lead] if size == -1 else size for i, size in enumerate(shape))
        return Expand.apply(self, shape=shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> "Tensor":
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

    def split(self, split_size_or_sections, dim: int = 0) -> tuple:
        """Split into pieces along `dim` (torch.split): an int gives pieces of that size (the last
        may be smaller), a list gives the size of each piece. Each piece is a slice (GetItem)."""
        axis = _normalize_dim(dim, self.ndim)[0]
        length = self.shape[axis]
        if isinstance(split_size_or_sections, (int, np.integer)):
            if split_size_or_sections < 1:
                raise ValueError(f"split: split_size must be at least 1, got {split_size_or_sections}")
            sizes = [split_size_or_sections] * (length // split_size_or_sections)
            if length % split_size_or_sections:
                sizes.append(length % split_size_or_sections)
        else:
            sizes = list(split_size_or_sections)
            if sum(sizes) != length:
                raise ValueError(f"split: sections {sizes} add up to {sum(sizes)}, but dim {dim} has length {length}")
        pieces, start = [], 0
        for size in sizes:
            index = (slice(None),) * axis + (slice(start, start + size),)
            pieces.append(self[index])
            start += size
        return tuple(pieces)

    def chunk(self, chunks: int, dim: int = 0) -> tuple:
        """Split into `chunks` pieces of ceil(n / chunks) along `dim`, the last smaller (torch.chunk)."""
        if isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)) or chunks < 1:
            raise ValueError(f"chunk: chunks must be a positive int, got {chunks!r}")
        length = self.shape[_normalize_dim(dim, self.ndim)[0]]
        size = max(-(-length // chunks), 1)
        return self.split(size, dim)

    def contiguous(self) -> "Tensor":
        """self when its array is C-contiguous (as PyTorch), else a differentiable copy (`Clone`)."""
        return self if self.data.flags.c_contiguous else Clone.apply(self)

    # ---- indexing ---------------------------------------------------------------------------
    def __getitem__(self, index) -> "Tensor":
        """Indexing as NumPy/PyTorch: slices, ints, None, ..., integer arrays and boolean masks."""
        return GetItem.apply(self, index=_index_of(index))

    def gather(self, dim: int, index) -> "Tensor":
        """out[i][j] = self[i][index[i][j]] for dim=1 (torch.gather, `Gather`); differentiable in self.

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

    def masked_fill(self, mask, value: float) -> "Tensor":
        """Put `value` where `mask` (bool, broadcastable to self) is True (torch.masked_fill).

        Raises:
            TypeError: the mask is not bool. ValueError: it does not broadcast to self's shape.
        """
        mask = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
        if mask.dtype != np.bool_:
            raise TypeError(f"masked_fill: mask must be bool, got dtype {mask.dtype}")
        try:
            if np.broadcast_shapes(mask.shape, self.shape) != self.shape:
                raise ValueError
        except ValueError:
            raise ValueError(f"masked_fill: mask of shape {mask.shape} does not broadcast to the tensor's shape {self.shape}") from None
        return MaskedFill.apply(self, mask=mask, value=value)

    # ---- in-place changes (PyTorch's autograd rules; see _in_place) -------------------------
    def _in_place(self, function: str, write, record, value_requires_grad: bool = False) -> "Tensor":
        """Apply an in-place change: `write()` changes self.data directly; `record()` returns the
        out-of-place result (a Tensor with a grad_fn whose input is `self`) for a non-leaf.

        The rules, as PyTorch's "Autograd mechanics: in-place operations":
        - a tensor that needs no gradient is changed in place (its array is written, so a tensor
          made by `from_numpy` and the array stay in step);
        - a leaf that requires grad may only be changed under `no_grad()` (weight
          initialisation); otherwise RuntimeError, with PyTorch's message;
        - a tensor computed from others (the book's `attn_scores.masked_fill_(...)`, ch. 3) gets
          the out-of-place result recorded as a new operation whose input is the tensor's previous
          value; the Python object then stands for the new value.
        - every Tensor counts its in-place changes (`_version`); an operation records its inputs'
          counts when applied, and its backward raises PyTorch's "modified by an inplace
          operation" error when one changed since. minigpt records every input of an operation
          (PyTorch only those the backward saves), so it also raises for an input of Add/Sub
          changed later, which PyTorch allows.
        NOTE: unlike PyTorch, views do not share a counter: an in-place change of a slice of a
        graph tensor does not write through to the tensor it was sliced from (on tensors without
        gradient, slices are views and do), and changing a slice or a `detach()`ed alias of a
        tensor is not detected.

        `value_requires_grad`: the value written in (the `y` of `x += y`) requires grad; then a
        tensor without gradient is recorded too and so joins the graph, as in PyTorch.
        """
        if not is_grad_enabled() or not (self.requires_grad or value_requires_grad):
            if not self.is_leaf or not self.data.flags.writeable:
                # A non-leaf changed under no_grad: its array may be saved by the op that made it, so
                # write into a copy (PyTorch would raise at the next backward). A read-only array
                # (an expand() view) gets its own memory too.
                self.data = self.data.copy()
            write()  # a leaf is written in place: parameters stay views of the optimizer's buffer
            self._version += 1  # an operation that used the old values raises at backward
            return self
        if self.is_leaf and self.requires_grad:
            raise RuntimeError(
                f"{function}: a leaf Variable that requires grad is being used in an in-place operation "
                "(change parameters under `with torch.no_grad():`)"
            )
        previous = Tensor._make(self.data, self.requires_grad)  # the value before the change keeps the old history
        previous.grad_fn, previous._version = self.grad_fn, self._version
        result = record()
        function_object = result.grad_fn
        function_object.inputs = tuple(previous if item is self else item for item in function_object.inputs)
        self.data, self.grad_fn, self.requires_grad = result.data, function_object, True
        # Operations that used self before now hold the wrong history: their backward raises.
        self._version += 1
        return self

    def masked_fill_(self, mask, value) -> "Tensor":
        """Put `value` where `mask` is True, in place (torch.Tensor.masked_fill_; book ch. 3.5.1).

        Raises as `masked_fill`; RuntimeError for a leaf that requires grad outside `no_grad`.
        """
        mask_array = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
        self.masked_fill(mask_array, value)  # validates mask dtype and shape with clear messages

        def write():
            np.copyto(self.data, self.data.dtype.type(value), where=mask_array)

        return self._in_place("masked_fill_", write, lambda: MaskedFill.apply(self, mask=mask_array, value=value))

    def fill_(self, value) -> "Tensor":
        """Set every element to `value`, in place (torch.Tensor.fill_)."""
        return self.masked_fill_(np.ones((), dtype=bool), value)

    def zero_(self) -> "Tensor":
        """Set every element to 0, in place (torch.Tensor.zero_)."""
        return self.fill_(0)

    # -- random fills, PyTorch's CPU streams (autograd/random.py): uniform_, normal_, ... -------

    def _fill_random(self, function: str, draw) -> "Tensor":
        """Overwrite every element with `draw(generator_module)`'s array, in place; returns self.

        Raises RuntimeError for a leaf that requires grad outside `no_grad` (as PyTorch; nn.init
        fills parameters under no_grad), TypeError for a float draw into an integer tensor.
        """
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError(f"{function}: a tensor that requires grad cannot be filled in place; use `with torch.no_grad():`")
        self.data[...] = draw(_random)
        self._version += 1
        return self

    def _float_only(self, function: str) -> None:
        if self.dtype.kind != "f":
            raise TypeError(f"{function}: expected a float tensor, got dtype {self.dtype}")

    def uniform_(self, a: float = 0.0, b: float = 1.0, generator=None) -> "Tensor":
        """Fill with U(a, b) in place (torch.Tensor.uniform_; nn.init.uniform_). Raises as `_fill_random`."""
        self._float_only("uniform_")
        return self._fill_random("uniform_", lambda r: r.uniform(r.resolve_generator(generator), self.shape, a, b, self.dtype))

    def normal_(self, mean: float = 0.0, std: float = 1.0, generator=None) -> "Tensor":
        """Fill with N(mean, std^2) in place (torch.Tensor.normal_; nn.init.normal_, nn.Embedding)."""
        self._float_only("normal_")
        if std < 0:
            raise ValueError(f"normal_: std must be >= 0, got {std}")
        return self._fill_random("normal_", lambda r: r.normal(r.resolve_generator(generator), self.shape, mean, std, self.dtype))

    def bernoulli_(self, p: float = 0.5, generator=None) -> "Tensor":
        """Fill with 1 (probability p) or 0, in place (torch.Tensor.bernoulli_ with a float p).

        Raises: ValueError for p outside [0, 1].
        """
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not 0 <= p <= 1:
            raise ValueError(f"bernoulli_: p must be a probability in [0, 1], got {p!r}")
        return self._fill_random("bernoulli_", lambda r: r.bernoulli_keep(r.resolve_generator(generator), self.shape, float(p)))

    def exponential_(self, lambd: float = 1.0, generator=None) -> "Tensor":
        """Fill with Exp(lambd) in place (torch.Tensor.exponential_). Raises ValueError for lambd <= 0."""
        self._float_only("exponential_")
        if not lambd > 0:
            raise ValueError(f"exponential_: lambd must be > 0, got {lambd}")
        return self._fill_random("exponential_", lambda r: r.exponential(r.resolve_generator(generator), self.shape, lambd, self.dtype))

    def random_(self, from_: int = 0, to: int | None = None, generator=None) -> "Tensor":
        """Fill with integers from [from_, to) in place (torch.Tensor.random_; `random_(to)` too);
        with no bounds, [0, 2**63) for int64 ([0, 2**53] for float64, ...).

        Raises: ValueError if to <= from_.
        """
        if to is None and from_ == 0:
            return self._fill_random("random_", lambda r: r.random_bits(r.resolve_generator(generator), self.shape, self.dtype))
        low, high = (0, from_) if to is None else (from_, to)
        return self._fill_random("random_", lambda r: r.integers(r.resolve_generator(generator), int(low), int(high), self.shape, self.dtype))

    def _in_place_arithmetic(self, function: str, symbol: str, operator, ufunc, other) -> "Tensor":
        """`self <symbol>= other` in place by `_in_place`'s rules: `ufunc(self.data, other, out=self.data)`
        for a tensor that needs no gradient, the out-of-place `operator(self, other)` recorded for
        a tensor of the graph.

        `other` (a number, array or Tensor) is converted to self's dtype first, so the result keeps
        self's dtype and shape, as PyTorch's in-place operators do. NOTE: PyTorch computes in the
        promoted dtype and rounds once; a float64 `other` for a float32 tensor is rounded first
        here (one rounding step apart).

        Raises:
            TypeError: the out-of-place result would be of a kind self cannot hold (a float for an
                integer or bool tensor, as `int_tensor += 0.5` or `int_tensor /= 2`; an integer for
                a bool tensor); PyTorch raises "result type Float can't be cast to the desired
                output type Long".
            ValueError: other does not broadcast to self's shape (an in-place result keeps it).
            RuntimeError: self is a leaf that requires grad, outside `no_grad` (see `_in_place`).
        """
        other = as_tensor(other, like=self)
        true_division = ufunc is np.true_divide
        result_kind = max(_KIND_RANK[self.dtype.kind], _KIND_RANK[other.dtype.kind], 2 if true_division else 0)
        if result_kind > _KIND_RANK[self.dtype.kind]:
            if other.dtype.kind == "f":
                result_dtype = other.dtype
            else:
                result_dtype = np.dtype(np.float32) if true_division else np.result_type(self.dtype, other.dtype)
            raise TypeError(
                f"{function}: x {symbol}= other gives dtype {result_dtype}, which cannot be stored in place in "
                f"x of dtype {self.dtype} (other has dtype {other.dtype}); write x = x {symbol} other, or convert "
                "x first (x = x.float())"
            )
        try:
            broadcast_shape = np.broadcast_shapes(self.shape, other.shape)
        except ValueError:
            broadcast_shape = None
        if broadcast_shape != self.shape:
            raise ValueError(
                f"{function}: other of shape {other.shape} does not broadcast to x's shape {self.shape} "
                "(an in-place result keeps x's shape)"
            )
        other = _cast(other, self.dtype)  # recorded (gradients flow back converted) when other requires grad

        def write():
            ufunc(self.data, other.data, out=self.data)

        return self._in_place(function, write, lambda: operator(self, other), value_requires_grad=other.requires_grad)

    def __iadd__(self, other) -> "Tensor":
        """self += other, in place (torch.Tensor.add_): the array is written, or on a tensor of the
        graph the sum recorded; manual SGD `p -= lr * p.grad` under `no_grad()` (appendix A) thus
        changes the parameter itself. See `_in_place_arithmetic` for dtypes, shapes and errors."""
        return self._in_place_arithmetic("__iadd__", "+", Tensor.__add__, np.add, other)

    def __isub__(self, other) -> "Tensor":
        """self -= other, in place (torch.Tensor.sub_); see `__iadd__`."""
        return self._in_place_arithmetic("__isub__", "-", Tensor.__sub__, np.subtract, other)

    def __imul__(self, other) -> "Tensor":
        """self *= other, in place (torch.Tensor.mul_); see `__iadd__`."""
        return self._in_place_arithmetic("__imul__", "*", Tensor.__mul__, np.multiply, other)

    def __itruediv__(self, other) -> "Tensor":
        """self /= other, in place (torch.Tensor.div_); a float tensor only, as in PyTorch (true
        division of integers gives a float); see `__iadd__`."""
        return self._in_place_arithmetic("__itruediv__", "/", Tensor.__truediv__, np.true_divide, other)

    def __setitem__(self, index, value) -> None:
        """`t[index] = value` (a number, array or Tensor broadcast to the selection), as PyTorch;
        recorded as a `SetItem` on a tensor of the graph.

        Raises:
            RuntimeError: a leaf that requires grad, outside `no_grad`.
            ValueError: value does not broadcast to the selected shape.
        """
        index = _index_of(index)
        value = as_tensor(value, like=self)
        selected_shape = np.shape(self.data[index])
        try:
            np.broadcast_shapes(value.shape, selected_shape)
        except ValueError:
            raise ValueError(f"setitem: a value of shape {value.shape} cannot be assigned to a selection of shape {selected_shape}") from None

        def write():
            self.data[index] = value.data

        def record():
            return SetItem.apply(self, _cast(value, self.dtype), index=index)

        self._in_place("setitem", write, record)

    # ---- conversion: dtypes, devices, copies ------------------------------------------------
    def to(self, *args, dtype=None, device=None, non_blocking: bool = False, copy: bool = False) -> "Tensor":
        """`to(dtype)`, `to(device)`, `to(device, dtype)` or `to(other_tensor)`, as torch.Tensor.to.

        The device must be the CPU ("cpu", `torch.device("cpu")`): minigpt runs on NumPy only. A
        dtype change is recorded (`Cast`: gradients flow back converted); nothing to do returns
        self (a differentiable copy with copy=True).

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
        result = self if dtype is None else _cast(self, dtype)
        return result.clone() if copy and result is self else result

    def float(self) -> "Tensor":
        """Convert to float32 (torch.Tensor.float); gradients flow back converted."""
        return _cast(self, np.float32)

    def double(self) -> "Tensor":
        """Convert to float64 (torch.Tensor.double), e.g. for gradient checks."""
        return _cast(self, np.float64)

    def half(self) -> "Tensor":
        """Convert to float16 (torch.Tensor.half); gradients flow back converted."""
        return _cast(self, np.float16)

    def bfloat16(self) -> "Tensor":
        """Round to bfloat16, kept in float32 (torch.Tensor.bfloat16; rule in autograd/bf16.py)."""
        return _cast(self, "bfloat16")

    def bool(self) -> "Tensor":
        """Convert to bool (torch.Tensor.bool; `mask.bool()` in ch. 3), no gradient."""
        return Tensor._make(self.data.astype(np.bool_), False)

    def long(self) -> "Tensor":
        """Convert to int64 (torch.Tensor.long), no gradient."""
        return Tensor._make(self.data.astype(np.int64), False)

    def int(self) -> "Tensor":
        """Convert to int32 (torch.Tensor.int), no gradient."""
        return Tensor._make(self.data.astype(np.int32), False)

    def clone(self) -> "Tensor":
        """A copy with its own memory, differentiable (torch.Tensor.clone, `Clone`)."""
        return Clone.apply(self)

    @property
    def device(self) -> device:
        """The device holding the values: always the CPU."""
        return CPU

    # ---- more of PyTorch's methods that the book's code calls (scripts/book_names.py) ------
    def ceil(self) -> "Tensor":
        """Round up, elementwise; no gradient (PyTorch's is zero everywhere)."""
        return Tensor._make(np.ceil(self.data), False)

    def floor(self) -> "Tensor":
        """Round down, elementwise; no gradient (PyTorch's is zero everywhere)."""
        return Tensor._make(np.floor(self.data), False)

    def logical_not(self) -> "Tensor":
        """True where the value is 0 or False (torch.logical_not), a bool tensor."""
        return Tensor._make(np.logical_not(self.data), False)

    def all(self, dim=None, keepdim: bool = False) -> "Tensor":
        """True when every value (along `dim`) is nonzero (torch.Tensor.all), a bool tensor."""
        return Tensor._make(np.asarray(np.all(self.data, axis=_normalize_dim(dim, self.ndim), keepdims=keepdim)), False)

    def any(self, dim=None, keepdim: bool = False) -> "Tensor":
        """True when some value (along `dim`) is nonzero (torch.Tensor.any), a bool tensor."""
        return Tensor._make(np.asarray(np.any(self.data, axis=_normalize_dim(dim, self.ndim), keepdims=keepdim)), False)

    def cumsum(self, dim: int) -> "Tensor":
        """Running sum along `dim` (torch.cumsum, `Cumsum`); integers and bools sum in int64."""
        return Cumsum.apply(self, axis=_normalize_dim(dim, self.ndim)[0] if self.ndim else None)

    def norm(self, p=2, dim=None, keepdim: bool = False) -> "Tensor":
        """The p-norm over `dim` (torch.Tensor.norm): (sum |x|^p)^(1/p), built from recorded ops.

        Raises:
            ValueError: p is not a positive number (the book's code uses p=2).
        """
        if isinstance(p, bool) or not isinstance(p, (int, float)) or p <= 0:
            raise ValueError(f"norm: p must be a positive number, got {p!r}")
        if p == 2:
            return (self * self).sum(dim=dim, keepdim=keepdim).sqrt()
        return (self.abs() ** p).sum(dim=dim, keepdim=keepdim) ** (1.0 / p)

    def tril(self, diagonal: int = 0) -> "Tensor":
        """The lower triangle of the last two dimensions, zeros above `diagonal` (torch.tril)."""
        rows, columns = self.shape[-2:]
        return self.masked_fill(np.triu(np.ones((rows, columns), dtype=bool), diagonal + 1), 0)

    def triu(self, diagonal: int = 0) -> "Tensor":
        """The upper triangle of the last two dimensions, zeros below `diagonal` (torch.triu)."""
        rows, columns = self.shape[-2:]
        return self.masked_fill(np.tril(np.ones((rows, columns), dtype=bool), diagonal - 1), 0)

    def index_select(self, dim: int, index) -> "Tensor":
        """The slices at `index` (1-D ints) along `dim` (torch.index_select); differentiable."""
        index = np.asarray(index.data if isinstance(index, Tensor) else index)
        if index.ndim != 1 or index.dtype.kind not in "iu":
            raise ValueError(f"index_select: index must be a 1-D integer tensor, got {index.dtype} of shape {index.shape}")
        axis = _normalize_dim(dim, self.ndim)[0]
        return self[(slice(None),) * axis + (index,)]

    def repeat_interleave(self, repeats: int, dim=None) -> "Tensor":
        """Each element (or slice along `dim`) repeated `repeats` times in place (torch.repeat_interleave;
        grouped-query attention repeats the key heads): [K1, K2] -> [K1, K1, K2, K2]; the gradient
        of every copy adds up. No dim: flattened first.

        Raises: ValueError for repeats that is not an int >= 1, or an out-of-range dim."""
        if isinstance(repeats, bool) or not isinstance(repeats, (int, np.integer)) or repeats < 1:
            raise ValueError(f"repeat_interleave: repeats must be an int >= 1, got {repeats!r}")
        if dim is None:
            return self.flatten().repeat_interleave(repeats, 0)
        axis = _normalize_dim(dim, self.ndim)[0]
        return self.index_select(axis, np.repeat(np.arange(self.shape[axis]), repeats))

    def repeat(self, *sizes) -> "Tensor":
        """The tensor tiled `sizes[i]` times along each dimension (torch.Tensor.repeat); differentiable.

        Raises:
            ValueError: fewer sizes than dimensions.
        """
        if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
            sizes = tuple(sizes[0])
        if len(sizes) < self.ndim:
            raise ValueError(f"repeat: {len(sizes)} sizes for a tensor of {self.ndim} dimensions")
        shape = (1,) * (len(sizes) - self.ndim) + tuple(self.shape)
        interleaved = [value for size in shape for value in (1, size)]  # (1, s0, 1, s1, ...)
        expanded = [value for count, size in zip(sizes, shape) for value in (count, size)]
        tiled = self.reshape(*interleaved).expand(*expanded)
        return tiled.reshape(*[count * size for count, size in zip(sizes, shape)])

    def unbind(self, dim: int = 0) -> tuple:
        """The slices along `dim`, a tuple of tensors one dimension smaller (torch.unbind)."""
        axis = _normalize_dim(dim, self.ndim)[0]
        return tuple(self[(slice(None),) * axis + (i,)] for i in range(self.shape[axis]))

    def nonzero(self) -> "Tensor":
        """Indices of the nonzero values, int64 (count, ndim) (torch.Tensor.nonzero)."""
        return Tensor._make(np.argwhere(self.data).astype(np.int64), False)

    def copy_(self, source) -> "Tensor":
        """Write `source` (broadcast to self's shape, converted to self's dtype) into self, in place
        (torch.Tensor.copy_; loading weights under `no_grad`)."""
        self[...] = source
        return self

    def index_add_(self, dim: int, index, source) -> "Tensor":
        """self[..., index[i], ...] += source[..., i, ...] along `dim`, repeated indices adding up
        (torch.Tensor.index_add_; mixture-of-experts routing). No gradient is recorded.

        Raises:
            RuntimeError: self or source requires a gradient while grad mode is on.
        """
        source = as_tensor(source, like=self)
        if is_grad_enabled() and (self.requires_grad or source.requires_grad):
            raise RuntimeError("index_add_: minigpt records no gradient for index_add_; call it under torch.no_grad()")
        index = np.asarray(index.data if isinstance(index, Tensor) else index)
        axis = _normalize_dim(dim, self.ndim)[0]
        np.add.at(self.data, (slice(None),) * axis + (index,), source.data.astype(self.dtype, copy=False))
        self._version += 1
        return self

    def scatter(self, dim: int, index, src) -> "Tensor":
        """A copy with out[i][index[i][j]] = src[i][j] along `dim` (torch.scatter); no gradient."""
        return self.detach().clone().scatter_(dim, index, src)

    def scatter_(self, dim: int, index, src) -> "Tensor":
        """In place: self[i][index[i][j]] = src[i][j] along `dim` (torch.Tensor.scatter_); a number
        `src` fills. No gradient is recorded.

        Raises:
            RuntimeError: self requires a gradient while grad mode is on.
        """
        if is_grad_enabled() and self.requires_grad:
            raise RuntimeError("scatter_: minigpt records no gradient for scatter_; call it under torch.no_grad()")
        index = np.asarray(index.data if isinstance(index, Tensor) else index)
        where = _gather_index(index, _normalize_dim(dim, self.ndim)[0])
        values = src.data if isinstance(src, Tensor) else src
        self.data[where] = values[tuple(slice(0, size) for size in index.shape)] if np.ndim(values) else values
        self._version += 1
        return self

    def cpu(self) -> "Tensor":
        """self: the values are in the CPU's memory already (torch.Tensor.cpu)."""
        return self

    def data_ptr(self) -> int:
        """The address of the first value (torch.Tensor.data_ptr): equal for tensors sharing memory."""
        return self.data.ctypes.data

    def element_size(self) -> int:
        """Bytes per value (torch.Tensor.element_size): 4 for float32."""
        return self.data.itemsize

    # ---- Python's protocols: f"{loss:.2f}", float(t), range(t), np.asarray(t) ---------------
    def __format__(self, spec: str) -> str:
        """`f"{loss:.2f}"` formats a one-element tensor's value, and `f"{freq}"` a 0-d tensor's value
        as a Python number (as PyTorch: `f"{torch.tensor(73)}"` is "73", chapter 5's sampling
        counts); any other tensor formats as str(self)."""
        if self.data.ndim == 0 or (self.data.size == 1 and spec):
            return format(self.data.item(), spec)
        return format(repr(self), spec)

    def __float__(self) -> float:
        """`float(t)` for a one-element tensor."""
        return float(self.item())

    def __int__(self) -> int:
        """`int(t)` for a one-element tensor."""
        return int(self.item())

    def __index__(self) -> int:
        """Use a one-element integer tensor as a Python index (`range(t)`, `list[t]`)."""
        if self.dtype.kind not in "iu" or self.data.size != 1:
            raise TypeError(f"only one-element integer tensors can be used as an index, got {self.dtype} of shape {self.shape}")
        return int(self.data.item())

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """`np.asarray(t)`: the values (no copy unless a dtype change or copy=True asks for one)."""
        array = self.data if dtype is None else self.data.astype(dtype, copy=False)
        return array.copy() if copy else array


def _softmax(name: str, function: str, x: Tensor, dim) -> Tensor:
    """Check the arguments of softmax / log_softmax and run the fused kernel `name` (`Softmax` or
    `LogSoftmax`) of the active set: the one place both `Tensor.softmax` and
    `autograd.functional.softmax` / `log_softmax` validate, so both kernel sets raise alike.

    A 0-d input is run as shape (1,) and given back 0-d: softmax 1.0 and log_softmax 0.0, as PyTorch.

    Raises:
        TypeError: `dim` is not an int (bool is not), or x is not a float tensor.
        IndexError: `dim` out of range.
    """
    if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{function}: dim must be an int, got {dim!r}")
    if x.dtype.kind != "f":
        raise TypeError(f"{function}: input must be a float tensor, got {x.dtype}")
    ndim = x.ndim
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"{function}: dim={dim} is out of range for a tensor with {ndim} dimensions")
    if ndim == 0:  # one element along the only "dimension": the kernels work on (1,)
        return kernels.get(name).apply(x.reshape(1), dim=0).reshape(())
    return kernels.get(name).apply(x, dim=int(dim) % ndim)


def _to_array(data, dtype, argument: str) -> np.ndarray:
    """Convert user data to an ndarray; Python floats become float32 (as torch.tensor does)."""
    if isinstance(data, Tensor):
        data = data.data
    if is_bfloat16(dtype):  # bfloat16 values in a float32 array (autograd/bf16.py)
        return round_to_bfloat16(_to_array(data, None, argument))
    if isinstance(data, np.ndarray) and dtype is None and is_bfloat16(data.dtype):
        data = data.astype(np.float32)  # an ml_dtypes bfloat16 array, e.g. read from a file
    if isinstance(data, np.ndarray):
        array = data if dtype is None else data.astype(dtype, copy=False)
    else:
        try:
            array = np.asarray(data, dtype=dtype)
        except (TypeError, ValueError) as error:
            raise TypeError(f"{argument} must be numeric (number, list, array), got {type(data).__name__}: {error}") from None
        if dtype is None and array.dtype == np.float64:
            array = array.astype(np.float32)
    if array.dtype.kind not in _VALID_KINDS:
        raise TypeError(
            f"{argument} must be numeric (bool, integer or floating point), got dtype "
            f"{array.dtype} from {type(data).__name__}"
        )
    return array


def tensor(data, requires_grad: bool = False, dtype=None, device=None) -> Tensor:
    """Make a leaf tensor from data (the factory readers know as `torch.tensor`).

    Args:
        data: a number, nested list of numbers (or of one-element Tensors), `np.ndarray`, or Tensor
            (copied, as torch.tensor copies). Python floats become float32 and Python ints int64;
            an array keeps its dtype unless `dtype` is given.
        requires_grad: record operations on it for backward (floating point only).
        dtype: a dtype such as `autograd.float32`, `autograd.long` or `np.float64`.
        device: None or "cpu" (minigpt runs on the CPU only).

    Returns:
        A new leaf Tensor with its own copy of the values.

    Raises:
        TypeError: non-numeric data, or requires_grad=True on a non-float dtype.
        RuntimeError: a device other than the CPU.

    Example:
        >>> x = tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        >>> (x * x).sum().backward()
        >>> x.grad          # d/dx sum(x^2) = 2x
        tensor([[2., 4.],
                [6., 8.]])
    """
    if device is not None:
        check_device(device, "tensor")
    if isinstance(data, (list, tuple)) and any(isinstance(item, Tensor) for item in data):
        data = [item.data if isinstance(item, Tensor) else item for item in data]
    result = Tensor(data, requires_grad=requires_grad, dtype=dtype)
    if isinstance(data, (np.ndarray, Tensor)) and np.shares_memory(result.data, data.data if isinstance(data, Tensor) else data):
        result.data = result.data.copy(order="K")  # torch.tensor(array) copies (appendix A.2: from_numpy shares)
    return result


def as_tensor(value, like: Tensor | None = None, dtype=None, device=None) -> Tensor:
    """Return `value` unchanged when it is a Tensor, else wrap it as a constant leaf (torch.as_tensor).

    A Python number takes the dtype of `like` (so `x * 0.5` stays float32 for a float32 `x`);
    arrays keep their own dtype. `dtype` converts (a Tensor through a recorded cast, as
    `Tensor.to`); `device` must be the CPU (see `Tensor.to`).
    """
    if dtype is not None or device is not None:
        check_device(device, "as_tensor")
        value = value if isinstance(value, Tensor) else Tensor(value, dtype=dtype)
        return value if dtype is None else value.to(dtype)
    if isinstance(value, Tensor):
        return value
    if like is not None and isinstance(value, (int, float, bool, np.number)) and not isinstance(value, np.ndarray):
        if isinstance(value, (float, np.floating)) and like.dtype.kind != "f":
            return Tensor._make(np.asarray(value, dtype=np.float32), False)
        return Tensor._make(np.asarray(value, dtype=like.dtype), False)
    return Tensor(value)


def _array_of(value):
    """The array of a Tensor, anything else unchanged (the other operand of a comparison)."""
    return value.data if isinstance(value, Tensor) else value


def _index_of(index):
    """An index for `t[index]` / `t[index] = v` with every Tensor in it replaced by its array and a
    list made an array (NumPy's advanced indexing)."""
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(part.data if isinstance(part, Tensor) else part for part in index)
    if isinstance(index, list):
        index = np.asarray(index)
    return index


def _is_dtype(value) -> bool:
    """True for something `np.dtype` accepts that is not a device name (`Tensor.to`'s arguments)."""
    if isinstance(value, (str, device)) or value is None:
        return False
    if is_bfloat16(value):
        return True
    try:
        np.dtype(value)
    except TypeError:
        return False
    return True


__all__ = ["Tensor", "Gradient", "HookHandle", "MaxMin", "TopK", "tensor", "as_tensor", "set_printoptions"]
