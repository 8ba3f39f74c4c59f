"""One recorded operation (`Function`) and the gradient mode (`no_grad`, `enable_grad`).

A differentiable operation is a subclass of `Function` with two methods side by side: `forward`
on plain NumPy arrays and `backward`, which turns the gradient of the output into one gradient
per input. `SomeOp.apply(*tensors)` runs `forward` and, when a gradient is needed, records the
operation on the output (`output.grad_fn`) with its inputs, so that `Tensor.backward` can walk
the graph back (`autograd/backward.py`). The gradient mode says whether anything is recorded:
`no_grad()` switches it off for evaluation, generation and optimizer updates.

This is the bottom of the engine: it imports no other engine file (not even NumPy), so the
primitive ops (`ops.py`), the fused functions and `tensor.py` all build on it one way.

References: torch.autograd.Function (forward/backward with a context), torch.no_grad,
torch.enable_grad, torch.is_grad_enabled; minitorch's `Function` / `ScalarFunction`.
"""

from __future__ import annotations

import functools

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

    __slots__ = ("inputs", "needs_input_grad", "released", "saved_versions", "torch_name", "__dict__")

    #: PyTorch's name for this op's backward node, as `grad_fn=<...>` prints it ("MulBackward0");
    #: None means the class name + "Backward0". An op whose PyTorch name depends on its operands
    #: (a sum over all elements or over a dim, a matrix or a batched product) overrides `torch_name_of`.
    TORCH_NAME: str | None = None

    def forward(self, *arrays, **options):  # pragma: no cover - every op overrides it
        raise NotImplementedError

    def backward(self, dout):  # pragma: no cover - every op overrides it
        raise NotImplementedError

    @property
    def name(self) -> str:
        """The operation's name, as printed in a graph (the class name, e.g. 'Matmul')."""
        return type(self).__name__

    @classmethod
    def torch_name_of(cls, inputs: tuple, options: dict) -> str:
        """PyTorch's name of the backward node this op records for `inputs` and `options`
        (the class name of PyTorch's `grad_fn`, e.g. "SumBackward1" for a sum over a dim)."""
        return cls.TORCH_NAME or cls.__name__ + "Backward0"

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
        # The output is built by the first input's `_make`, a staticmethod that always makes a plain
        # Tensor (never a subclass such as minigpt's Parameter): this file cannot import tensor.py,
        # which imports it (tensor.py -> function.py, one way, no import circle).
        result = inputs[0]._make(output, requires_grad)
        if requires_grad:
            function.inputs = inputs
            # The inputs' version counts now: backward checks that no in-place change came between.
            function.saved_versions = tuple([tensor._version for tensor in inputs])
            function.released = False
            function.torch_name = cls.torch_name_of(inputs, options)
            result.grad_fn = function
        return result

    def release(self) -> None:
        """Drop what forward saved and the references to the inputs (after a backward pass)."""
        self.__dict__.clear()
        self.inputs = ()
        self.released = True

    def __repr__(self) -> str:
        return f"<{self.name}>"


__all__ = ["Function", "is_grad_enabled", "no_grad", "enable_grad"]
