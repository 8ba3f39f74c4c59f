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
import sys
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
# How tensors print (torch.set_printoptions)
# --------------------------------------------------------------------------------------------

_DEFAULT_PRINT_OPTIONS = {"precision": 4, "threshold": 20, "edgeitems": 3, "max_line_width": 80, "sci_mode": None}
_print_options = dict(_DEFAULT_PRINT_OPTIONS)


def set_printoptions(precision: int | None = None, threshold: int | None = None, edgeitems: int | None = None,
                     linewidth: int | None = None, profile: str | None = None, sci_mode: bool | None = None) -> None:
    """Set how tensors print (torch.set_printoptions); options not given keep their value.

    Args:
        precision: digits after the decimal point (default 4).
        threshold: above this many elements, print a summary with `...` (default 20).
        edgeitems: items shown at each end of a summarised dimension (default 3).
        linewidth: characters per line (default 80).
        profile: "default" restores the defaults, "short" (precision 2, threshold 20) or "full"
            (every element) set several at once, before the other arguments apply.
        sci_mode: True forces scientific notation, False suppresses it (appendix A's
            `torch.set_printoptions(sci_mode=False)`), None lets NumPy choose.

    Raises:
        ValueError: an unknown profile.

    References: torch.set_printoptions; np.array2string.
    """
    if profile is not None:
        profiles = {"default": _DEFAULT_PRINT_OPTIONS, "short": {**_DEFAULT_PRINT_OPTIONS, "precision": 2},
                    "full": {**_DEFAULT_PRINT_OPTIONS, "threshold": sys.maxsize}}
        if profile not in profiles:
            raise ValueError(f"set_printoptions: profile must be 'default', 'short' or 'full', got {profile!r}")
        _print_options.update(profiles[profile])
    given = {"precision": precision, "threshold": threshold, "edgeitems": edgeitems, "max_line_width": linewidth}
    _print_options.update({name: value for name, value in given.items() if value is not None})
    if sci_mode is not None or profile is not None:
        _print_options["sci_mode"] = sci_mode


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

    __slots__ = ("inputs", "needs_input_grad", "released", "saved_versions", "__dict__")

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
            # The inputs' version counts now: backward checks that no in-place change came between.
            function.saved_versions = tuple([tensor._version for tensor in inputs])
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
        return repr(self.view(np.ndarray))  # prints as the plain array it is: array([...])

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

    @classmethod
    def _make(cls, array: np.ndarray, requires_grad: bool) -> "Tensor":
        """Wrap an array computed by an operation, skipping the checks of `__init__` (hot path)."""
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

    # ---- the gradient ---------------------------------------------------------------------------
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
        options = dict(_print_options)
        sci_mode = options.pop("sci_mode")
        if sci_mode is False:
            options["suppress_small"] = True
        elif sci_mode is True and self.data.dtype.kind == "f":
            digits = options["precision"]
            options["formatter"] = {"float_kind": lambda value: f"{value:.{digits}e}"}
        body = np.array2string(self.data, separator=", ", prefix="tensor(", **options)
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
        array([[2., 4.], [6., 8.]], dtype=float32)
    """
    if device is not None:
        from autograd.creation import check_device

        check_device(device, "tensor")
    if isinstance(data, (list, tuple)) and any(isinstance(item, Tensor) for item in data):
        data = [item.data if isinstance(item, Tensor) else item for item in data]
    result = Tensor(data, requires_grad=requires_grad, dtype=dtype)
    if isinstance(data, (np.ndarray, Tensor)) and np.shares_memory(result.data, data.data if isinstance(data, Tensor) else data):
        result.data = result.data.copy(order="K")  # torch.tensor(array) copies (appendix A.2: from_numpy shares)
    return result


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


def _topological_order(roots: list) -> list:
    """Tensors reachable from `roots` that require grad, each after every tensor it depends on.

    Iterative depth-first search with an explicit stack (no recursion limit): an operation's
    output is emitted when all its inputs have been emitted. A leaf is emitted just before the
    first operation that uses it, not when the search first meets it, so that the backward walk
    (which runs this order in reverse) reaches the leaf right after the last of its uses and
    completes its `.grad` as early as possible: data-parallel training starts sending finished
    gradients from there (`register_post_accumulate_grad_hook`) while backward goes on.
    """
    order = []
    visited = set()  # ids of operation outputs whose inputs are being searched or done
    emitted_leaves = set()
    stack = [(root, False) for root in reversed(roots)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            for child in node.grad_fn.inputs:  # its leaves, right before their first use
                if child.grad_fn is None and child.requires_grad and id(child) not in emitted_leaves:
                    emitted_leaves.add(id(child))
                    order.append(child)
            order.append(node)
            continue
        if node.grad_fn is None:  # a root that is a leaf
            if id(node) not in emitted_leaves:
                emitted_leaves.add(id(node))
                order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for child in node.grad_fn.inputs:
            if child.requires_grad and child.grad_fn is not None and id(child) not in visited:
                stack.append((child, False))
    return order


def _run_backward(roots: list, gradients: list, retain_graph: bool, captured: dict | None = None) -> None:
    """Propagate `gradients` from `roots` to the leaves (see `Tensor.backward` and `grad`).

    With `captured` (a dict whose keys are the ids of some tensors), the total gradient reaching
    each of those tensors is stored in it instead, and no `.grad` of any tensor is touched.
    """
    order = _topological_order(roots)
    pending = {}  # tensor id -> total gradient received so far
    for root, gradient in zip(roots, gradients):
        previous = pending.get(id(root))
        pending[id(root)] = gradient if previous is None else previous + gradient
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
        if captured is not None:
            if id(node) in captured:
                captured[id(node)] = dout.copy()  # a backward rule may share dout between inputs
            if function is None:
                continue
        elif function is None:
            _accumulate_leaf_grad(node, dout, given_to_leaves)
            if node._post_accumulate_grad_hooks:
                for hook in list(node._post_accumulate_grad_hooks):
                    hook(node)
            continue
        elif node._retains_grad:
            node.grad = dout.copy() if node.grad is None else node.grad + dout
        if function.released:
            raise RuntimeError(
                f"Trying to backward through the graph a second time: the graph of {function.name} "
                "was freed by the first backward(). Pass retain_graph=True to the first call if you "
                "need to call backward twice."
            )
        if tuple([child._version for child in function.inputs]) != function.saved_versions:
            _raise_modified_in_place(function)
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


def _raise_modified_in_place(function: Function) -> None:
    """Raise PyTorch's error for an input of `function` changed in place after `function` used it."""
    for number, (child, version) in enumerate(zip(function.inputs, function.saved_versions)):
        if child._version != version:
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by an "
                f"inplace operation: input {number} of {function.name} (a tensor of shape "
                f"{child.shape} and dtype {child.dtype}) is at version {child._version}; expected "
                f"version {version} instead. Hint: change a clone() of the tensor instead, or make "
                "the in-place change before any operation uses the tensor."
            )


def _initial_gradient(root: Tensor, gradient) -> np.ndarray:
    """d(loss)/d(root) as an array of root's shape and dtype: ones for one element when omitted."""
    if gradient is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward() without a gradient works only for a tensor with one element; "
                f"this one has shape {root.shape}: pass gradient= of that shape"
            )
        return np.ones_like(root.data)
    gradient = gradient.data if isinstance(gradient, Tensor) else gradient
    gradient = np.array(gradient, dtype=root.dtype, copy=True)
    if gradient.shape != root.shape:
        raise ValueError(f"gradient has shape {gradient.shape}, expected the tensor's shape {root.shape}")
    return gradient


def _as_tensor_tuple(value, argument: str) -> tuple:
    """`value` as a tuple of Tensors (one Tensor, or a list/tuple of them)."""
    items = (value,) if isinstance(value, Tensor) else tuple(value) if isinstance(value, (list, tuple)) else None
    if not items or not all(isinstance(item, Tensor) for item in items):
        raise TypeError(f"grad: {argument} must be a Tensor or a non-empty sequence of Tensors, got {value!r:.80}")
    return items


def grad(outputs, inputs, grad_outputs=None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool = False) -> tuple:
    """The gradients of `outputs` with respect to `inputs`, returned rather than stored in `.grad`.

    Computes sum_k d(outputs[k] . grad_outputs[k]) / d(inputs[i]) for each input by the same
    backward walk as `Tensor.backward`, but leaves every tensor's `.grad` untouched (appendix A:
    `grad_L_w1 = grad(loss, w1, retain_graph=True)`).

    Args:
        outputs: a Tensor or a sequence of Tensors to differentiate.
        inputs: a Tensor or a sequence of Tensors (leaves or intermediates) that require grad.
        grad_outputs: the upstream gradient of each output (arrays or Tensors, each of its
            output's shape); None means 1 for outputs with one element.
        retain_graph: keep the graph for another backward; defaults to `create_graph` (False).
        create_graph: must be False: minigpt's backward rules work on plain arrays and build no
            graph, so gradients of gradients are not available.
        allow_unused: return None for an input the outputs do not depend on, instead of raising.

    Returns:
        A tuple with one Tensor (no grad, same shape and dtype as its input) per input.

    Raises:
        TypeError: outputs or inputs are not Tensors.
        RuntimeError: an output or input does not require grad; an input is not reached and
            allow_unused is False; an output with several elements and no grad_output.
        NotImplementedError: create_graph=True.

    References: torch.autograd.grad.
    """
    if create_graph:
        raise NotImplementedError(
            "grad: create_graph=True (higher-order gradients) is not supported: minigpt's backward "
            "rules work on plain NumPy arrays and record no graph"
        )
    outputs = _as_tensor_tuple(outputs, "outputs")
    inputs = _as_tensor_tuple(inputs, "inputs")
    if grad_outputs is None:
        grad_outputs = (None,) * len(outputs)
    elif isinstance(grad_outputs, (Tensor, np.ndarray)):
        grad_outputs = (grad_outputs,)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    for number, tensor_ in enumerate(outputs + inputs):
        if not tensor_.requires_grad:
            kind = "output" if number < len(outputs) else "input"
            raise RuntimeError(f"grad: {kind} {number if number < len(outputs) else number - len(outputs)} does not require grad")
    gradients = [_initial_gradient(output, upstream) for output, upstream in zip(outputs, grad_outputs)]
    captured = {id(tensor_): None for tensor_ in inputs}
    _run_backward(list(outputs), gradients, bool(retain_graph), captured)
    results = []
    for number, tensor_ in enumerate(inputs):
        value = captured[id(tensor_)]
        if value is None and not allow_unused:
            raise RuntimeError(
                f"grad: input {number} is not used to compute the outputs (pass allow_unused=True "
                "to get None for it)"
            )
        results.append(None if value is None else Tensor._make(value, False))
    return tuple(results)


def _accumulate_leaf_grad(leaf: Tensor, dout: np.ndarray, given_to_leaves: set) -> None:
    """Add `dout` into `leaf.grad`, making sure no two leaves ever share one gradient array."""
    if leaf.grad is None:
        # A backward rule may pass its incoming gradient through unchanged (to two inputs, or as a
        # view): copy unless this leaf is the array's only owner, so that in-place updates of one
        # .grad (clipping, accumulation) never change another's.
        if not dout.flags.owndata or id(dout) in given_to_leaves or not dout.flags.writeable:
            dout = dout.copy()
        given_to_leaves.add(id(dout))
        leaf.grad = dout  # stored as a Gradient view (see Tensor.grad)
    else:
        np.add(leaf._grad, dout, out=leaf._grad)


# The operations are defined in ops.py and attached to Tensor as methods there.
from autograd import ops as _ops  # noqa: E402,F401  (import for its side effect: Tensor methods)
