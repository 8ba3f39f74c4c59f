"""The graph machinery of the engine: `Tensor`, `Function` and the backward walk.

A `Tensor` wraps a NumPy array (`.data`). When an operation is applied to tensors that require
gradients, the result remembers the `Function` object that made it (`.grad_fn`), and that object
remembers its inputs and whatever its backward rule needs. `loss.backward()` walks this graph from
the loss to the leaves in reverse topological order, calling each function's `backward` once with
the gradient of its output and accumulating the gradients of the leaves into their `.grad`.

This is reverse-mode automatic differentiation as in PyTorch's autograd (Paszke et al. 2017,
"Automatic differentiation in PyTorch") and micrograd, on whole arrays instead of scalars. The
primitive operations live in `autograd/ops.py`, the fused neural-network functions in
`autograd/functional.py`; this file only knows how to record and walk a graph.

Shape letters used in comments across the engine: B batch, T tokens, C channels, H heads,
D head size, V vocabulary.
"""

from __future__ import annotations

import functools
from collections import namedtuple

import numpy as np

from autograd import memory as _memory  # the process settings applied at the first backward

# --------------------------------------------------------------------------------------------
# Gradient mode: whether operations record a graph (`no_grad` switches it off).
# --------------------------------------------------------------------------------------------

_grad_enabled = True


def is_grad_enabled() -> bool:
    """Return True when operations record a graph for backward (the default).

    References: torch.is_grad_enabled.
    """
    return _grad_enabled


class _GradMode:
    """Context manager and decorator that sets the gradient mode and restores it on exit."""

    enabled = True

    def __enter__(self):
        global _grad_enabled
        self._previous = _grad_enabled
        _grad_enabled = self.enabled
        return self

    def __exit__(self, *exc_info):
        global _grad_enabled
        _grad_enabled = self._previous
        return False

    def __call__(self, function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return function(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):
    """Record no graph inside this block or decorated function (evaluation, generation, updates).

    Results computed under `no_grad` have `requires_grad=False` and keep no reference to their
    inputs, so no memory is held for a backward pass.

    Example:
        >>> with no_grad():
        ...     logits = model(ids)

    References: torch.no_grad.
    """

    enabled = False


class enable_grad(_GradMode):
    """Record the graph again inside this block, even within `no_grad`. References: torch.enable_grad."""

    enabled = True


# --------------------------------------------------------------------------------------------
# Function: one recorded operation.
# --------------------------------------------------------------------------------------------


class Function:
    """Base class of every differentiable operation.

    A subclass writes two methods, side by side:

    - `forward(self, *arrays, **options)` computes the output from plain NumPy arrays and saves on
      `self` only what `backward` needs;
    - `backward(self, dout)` receives the gradient of the loss with respect to the output (`dout`,
      same shape as the output) and returns one gradient per input (a tuple, or a single array
      for one input), each with its input's shape and dtype, or None for an input that needs no
      gradient. It works on plain arrays and builds no graph.

    `self.needs_input_grad[i]` tells `backward` whether input i needs a gradient, so that it can
    skip work. `Function.apply(*tensors, **options)` runs `forward` and records the operation.

    References: torch.autograd.Function (forward/backward with a context); minitorch.
    """

    __slots__ = ("inputs", "needs_input_grad", "released", "__dict__")

    def forward(self, *arrays, **options):  # pragma: no cover - every op overrides it
        raise NotImplementedError

    def backward(self, dout):  # pragma: no cover - every op overrides it
        raise NotImplementedError

    @property
    def name(self) -> str:
        """The operation's name, as printed in a graph (the class name, e.g. 'Matmul')."""
        return type(self).__name__

    @classmethod
    def apply(cls, *inputs: "Tensor", **options) -> "Tensor":
        """Run the operation on `inputs` (Tensors) and record it when a gradient is needed.

        Args:
            *inputs: the Tensor operands, in the order `forward` takes their arrays.
            **options: non-differentiable arguments (a dim, a shape, a constant), passed to forward.

        Returns:
            A new Tensor holding forward's result; its `grad_fn` is this operation when grad mode
            is on and at least one input requires a gradient.
        """
        function = cls()
        requires_grad = _grad_enabled and any(tensor.requires_grad for tensor in inputs)
        # Set before forward runs, so that forward can skip saving what no backward will need.
        function.needs_input_grad = tuple(requires_grad and tensor.requires_grad for tensor in inputs)
        output = function.forward(*[tensor.data for tensor in inputs], **options)
        result = Tensor._make(output, requires_grad)
        if requires_grad:
            function.inputs = inputs
            function.released = False
            result.grad_fn = function
        return result

    def release(self) -> None:
        """Drop what forward saved and the references to the inputs (after a backward pass)."""
        self.__dict__.clear()
        self.inputs = ()
        self.released = True

    def __repr__(self) -> str:
        return f"<{self.name}>"


# --------------------------------------------------------------------------------------------
# Tensor
# --------------------------------------------------------------------------------------------

_VALID_KINDS = "biuf"  # bool, signed int, unsigned int, float: the dtypes a Tensor may hold

MaxMin = namedtuple("MaxMin", ["values", "indices"])
MaxMin.__doc__ = "Result of `Tensor.max(dim)` / `Tensor.min(dim)`: values and their int64 indices."


class HookHandle:
    """Returned by `Tensor.register_hook`; `remove()` unregisters the hook."""

    def __init__(self, hooks: list, hook):
        self._hooks = hooks
        self._hook = hook

    def remove(self) -> None:
        """Unregister the hook (doing it twice is harmless)."""
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)


class Tensor:
    """An n-dimensional array that can record the operations applied to it and be differentiated.

    Attributes:
        data: the values, a plain `np.ndarray` (bool, integer or floating point).
        grad: None until a backward pass reaches this tensor, then an `np.ndarray` of the same
            shape and dtype holding d(loss)/d(this tensor). Leaves accumulate it over several
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

    __slots__ = ("data", "grad", "requires_grad", "grad_fn", "_retains_grad", "_hooks", "__weakref__")

    # Make NumPy defer to Tensor in mixed expressions (`array + tensor` calls Tensor.__radd__).
    __array_ufunc__ = None

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data = _to_array(data, dtype, argument="data")
        if requires_grad and self.data.dtype.kind != "f":
            raise TypeError(
                f"requires_grad=True needs a floating-point tensor, got dtype {self.data.dtype}"
            )
        self.requires_grad = bool(requires_grad)
        self.grad = None
        self.grad_fn = None
        self._retains_grad = False
        self._hooks = None

    @classmethod
    def _make(cls, array: np.ndarray, requires_grad: bool) -> "Tensor":
        """Wrap an array computed by an operation, skipping the checks of `__init__` (hot path)."""
        tensor = object.__new__(Tensor)
        tensor.data = array if isinstance(array, np.ndarray) else np.asarray(array)
        tensor.requires_grad = requires_grad
        tensor.grad = None
        tensor.grad_fn = None
        tensor._retains_grad = False
        tensor._hooks = None
        return tensor

    # ---- plain properties -------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        """The shape, a tuple of ints (as `np.ndarray.shape`; PyTorch's `torch.Size`)."""
        return self.data.shape

    @property
    def ndim(self) -> int:
        """The number of dimensions."""
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        """The NumPy dtype of the values."""
        return self.data.dtype

    def size(self, dim: int | None = None):
        """The shape (PyTorch's `x.size()`), or the length of dimension `dim`."""
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self) -> int:
        """The number of elements (NumPy's `size`)."""
        return self.data.size

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
        body = np.array2string(self.data, separator=", ", precision=4, threshold=20, prefix="tensor(")
        extras = [f"dtype={self.dtype}"]
        if self.grad_fn is not None:
            extras.append(f"grad_fn=<{self.grad_fn.name}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return f"tensor({body}, {', '.join(extras)})"

    def __bool__(self) -> bool:
        return bool(self.data)

    __hash__ = object.__hash__  # comparisons return tensors, so keep identity hashing

    # ---- gradients --------------------------------------------------------------------------
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

        The first backward of the process also applies the training process settings
        (`autograd.memory.apply_process_settings`; opt out with MINIGPT_PROCESS_SETTINGS=0).

        References: torch.Tensor.backward; Griewank & Walther, "Evaluating Derivatives" (2008).
        """
        if _memory.settings_pending:  # the first backward of the process: training has begun
            _memory.apply_process_settings()
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of the computation "
                "had requires_grad=True, or it was computed under no_grad()"
            )
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient works only for a tensor with one element; "
                    f"this one has shape {self.shape}: pass gradient= of that shape"
                )
            gradient = np.ones_like(self.data)
        else:
            gradient = gradient.data if isinstance(gradient, Tensor) else gradient
            gradient = np.array(gradient, dtype=self.dtype, copy=True)
            if gradient.shape != self.shape:
                raise ValueError(
                    f"gradient has shape {gradient.shape}, expected the tensor's shape {self.shape}"
                )
        _run_backward(self, gradient, retain_graph)

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


def _to_array(data, dtype, argument: str) -> np.ndarray:
    """Convert user data to an ndarray; Python floats become float32 (as torch.tensor does)."""
    if isinstance(data, Tensor):
        data = data.data
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


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """Make a leaf tensor from data (the factory readers know as `torch.tensor`).

    Args:
        data: a number, nested list of numbers, `np.ndarray`, or Tensor. Python floats become
            float32 and Python ints int64; an array keeps its dtype unless `dtype` is given.
        requires_grad: record operations on it for backward (floating point only).
        dtype: a NumPy dtype (e.g. `np.float64` for gradient checks).

    Returns:
        A new leaf Tensor.

    Raises:
        TypeError: non-numeric data, or requires_grad=True on a non-float dtype.

    Example:
        >>> x = tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
        >>> (x * x).sum().backward()
        >>> x.grad          # d/dx sum(x^2) = 2x
        array([[2., 4.], [6., 8.]], dtype=float32)
    """
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def as_tensor(value, like: Tensor | None = None) -> Tensor:
    """Return `value` unchanged when it is a Tensor, else wrap it as a constant leaf.

    A Python number takes the dtype of `like` (so `x * 0.5` stays float32 for a float32 `x`);
    arrays keep their own dtype.
    """
    if isinstance(value, Tensor):
        return value
    if like is not None and isinstance(value, (int, float, bool, np.number)) and not isinstance(value, np.ndarray):
        if isinstance(value, (float, np.floating)) and like.dtype.kind != "f":
            return Tensor._make(np.asarray(value, dtype=np.float32), False)
        return Tensor._make(np.asarray(value, dtype=like.dtype), False)
    return Tensor(value)


# --------------------------------------------------------------------------------------------
# The backward walk
# --------------------------------------------------------------------------------------------


def _topological_order(root: Tensor) -> list:
    """Tensors reachable from `root` that require grad, each after every tensor it depends on.

    Iterative depth-first search with an explicit stack (no recursion limit): a node is emitted
    when all its inputs have been emitted.
    """
    order = []
    visited = set()
    stack = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        function = node.grad_fn
        if function is not None:
            for child in function.inputs:
                if child.requires_grad and id(child) not in visited:
                    stack.append((child, False))
    return order


def _run_backward(root: Tensor, gradient: np.ndarray, retain_graph: bool) -> None:
    """Propagate `gradient` from `root` to the leaves (see `Tensor.backward`)."""
    order = _topological_order(root)
    pending = {id(root): gradient}  # tensor id -> total gradient received so far
    given_to_leaves = set()  # ids of arrays stored as some leaf's .grad in this pass
    for position in range(len(order) - 1, -1, -1):
        node = order[position]
        order[position] = None  # let activations be freed as soon as the walk passes them
        dout = pending.pop(id(node), None)
        if dout is None:
            continue
        if node._hooks:
            for hook in list(node._hooks):
                replaced = hook(dout)
                if replaced is not None:
                    dout = np.asarray(replaced)
        function = node.grad_fn
        if function is None:
            _accumulate_leaf_grad(node, dout, given_to_leaves)
            continue
        if node._retains_grad:
            node.grad = dout.copy() if node.grad is None else node.grad + dout
        if function.released:
            raise RuntimeError(
                f"Trying to backward through the graph a second time: the graph of {function.name} "
                "was freed by the first backward(). Pass retain_graph=True to the first call if you "
                "need to call backward twice."
            )
        input_grads = function.backward(dout)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        for child, child_grad in zip(function.inputs, input_grads):
            if child_grad is None or not child.requires_grad:
                continue
            if child_grad.shape != child.shape or child_grad.dtype != child.dtype:
                raise RuntimeError(
                    f"{function.name}.backward returned a gradient of shape {child_grad.shape} "
                    f"and dtype {child_grad.dtype} for an input of shape {child.shape} and dtype "
                    f"{child.dtype}"
                )
            previous = pending.get(id(child))
            # Out of place: a backward rule may hand the same array to two inputs (Add does).
            pending[id(child)] = child_grad if previous is None else previous + child_grad
        if not retain_graph:
            function.release()


def _accumulate_leaf_grad(leaf: Tensor, dout: np.ndarray, given_to_leaves: set) -> None:
    """Add `dout` into `leaf.grad`, making sure no two leaves ever share one gradient array."""
    if leaf.grad is None:
        # A backward rule may pass its incoming gradient through unchanged (to two inputs, or as a
        # view): copy unless this leaf is the array's only owner, so that in-place updates of one
        # .grad (clipping, accumulation) never change another's.
        if not dout.flags.owndata or id(dout) in given_to_leaves or not dout.flags.writeable:
            dout = dout.copy()
        given_to_leaves.add(id(dout))
        leaf.grad = dout
    else:
        leaf.grad += dout


# The operations are defined in ops.py and attached to Tensor as methods there.
from autograd import ops as _ops  # noqa: E402,F401  (import for its side effect: Tensor methods)
