"""One switch between the two versions of every fused op: "reference" (to read) and "fast" (to train).

Every fused op (softmax, cross-entropy, layer norm, GELU, attention, ...) exists twice, with the
same class name and `forward` arguments: in `autograd/reference/` as plain NumPy that a learner
steps into from `loss.backward()`, and in `autograd/fast/` blocked, in place and threaded.
`autograd.functional` and `Tensor.softmax` / `Tensor.sigmoid` ask `get(name)` for the class of the
active set, each time they are called, so a switch takes effect at the next operation:

    >>> import autograd
    >>> autograd.get_kernels()
    'fast'
    >>> with autograd.kernels("reference"):      # a block of reference kernels
    ...     autograd.get_kernels()
    'reference'
    >>> autograd.set_kernels("reference")        # from now on (or MINIGPT_KERNELS=reference)
    >>> autograd.set_kernels("fast")

Fast is the default; the environment variable MINIGPT_KERNELS ("reference" or "fast") is read
once, when autograd is imported (any other value raises ValueError at the first fused op or
`get_kernels()`, unless `set_kernels` chose a set first). A graph built under one set is differentiated by that set's
backward rules, whatever is active when `backward()` runs.

NOTE: `autograd.kernels` (the package's name) is the context manager below, which hides this
module behind it; so the context manager also carries `get`, `set_kernels` and `get_kernels`,
and `autograd.kernels.get("Softmax")` works whichever of the two a reader holds.

References: llm.c's `dev/cuda/` (a plain reference kernel and fast kernels checked against it);
minitorch's `tensor_ops.py` / `fast_ops.py`; torch.backends' switches (e.g. torch.backends.cudnn.flags).
"""

from __future__ import annotations

import os

from autograd.fast import attention as fast_attention
from autograd.fast import cross_entropy as fast_cross_entropy
from autograd.fast import dropout as fast_dropout
from autograd.fast import embedding as fast_embedding
from autograd.fast import gelu as fast_gelu
from autograd.fast import layer_norm as fast_layer_norm
from autograd.fast import linear as fast_linear
from autograd.fast import rms_norm as fast_rms_norm
from autograd.fast import rope as fast_rope
from autograd.fast import losses as fast_losses
from autograd.fast import sigmoid as fast_sigmoid
from autograd.fast import silu as fast_silu
from autograd.fast import softmax as fast_softmax
from autograd.function import Function
from autograd.reference import attention, cross_entropy, dropout, embedding, gelu, layer_norm, linear, losses, sigmoid, softmax
from autograd.reference import rms_norm, rope, silu  # Llama 3 / Qwen3 (issue 23)

__all__ = ["KERNEL_SETS", "ENVIRONMENT_VARIABLE", "set_kernels", "get_kernels", "kernels", "get"]

KERNEL_SETS = ("reference", "fast")
ENVIRONMENT_VARIABLE = "MINIGPT_KERNELS"


def _table(*modules) -> dict[str, type[Function]]:
    """Op name -> class, for the classes each module lists in its `__all__` (Function subclasses)."""
    table = {}
    for module in modules:
        for name in module.__all__:
            value = getattr(module, name)
            if isinstance(value, type) and issubclass(value, Function):
                table[name] = value
    return table


_CLASSES = {
    "reference": _table(softmax, cross_entropy, gelu, layer_norm, dropout, embedding, linear, attention, sigmoid, losses,
                        rms_norm, silu, rope),
    "fast": _table(fast_softmax, fast_cross_entropy, fast_gelu, fast_layer_norm, fast_dropout, fast_embedding,
                   fast_linear, fast_attention, fast_sigmoid, fast_losses, fast_rms_norm, fast_silu, fast_rope),
}


def _checked(name, argument: str) -> str:
    if name not in KERNEL_SETS:
        raise ValueError(f"{argument} must be 'reference' or 'fast', got {name!r}")
    return name


def _from_environment() -> str:
    """The set named by MINIGPT_KERNELS, "fast" when it is unset or empty."""
    value = os.environ.get(ENVIRONMENT_VARIABLE, "")
    return _checked(value, f"the environment variable {ENVIRONMENT_VARIABLE}") if value else "fast"


# A bad MINIGPT_KERNELS is kept, not raised, at import: `set_kernels` (or `minigpt ... --kernels`)
# may still choose a set; the first fused op (or `get_kernels`) without one raises it.
try:
    _active, _environment_error = _from_environment(), None
except ValueError as error:
    _active, _environment_error = None, error


def _active_set() -> str:
    if _active is None:
        raise ValueError(str(_environment_error))
    return _active


def set_kernels(name: str) -> None:
    """Use the "reference" or the "fast" version of every fused op from now on (process-wide).

    Args:
        name: "reference" (plain NumPy, to read and step into) or "fast" (the default).

    Raises:
        ValueError: any other name (naming the two).
    """
    global _active
    _active = _checked(name, "set_kernels: name")


def get_kernels() -> str:
    """The active set of kernels: "reference" or "fast".

    Raises:
        ValueError: MINIGPT_KERNELS held another value and no `set_kernels` chose a set since.
    """
    return _active_set()


def get(name: str) -> type[Function]:
    """The `Function` class called `name` (e.g. "Softmax", "CrossEntropy") in the active set.

    Raises:
        KeyError: no fused op of that name (the message lists the names).
        ValueError: MINIGPT_KERNELS held another value and no `set_kernels` chose a set since.
    """
    classes = _CLASSES[_active_set()]
    if name not in classes:
        raise KeyError(f"kernels.get: no fused op named {name!r}; the ops are {', '.join(sorted(classes))}")
    return classes[name]


class kernels:  # noqa: N801 - a context manager named like torch's no_grad
    """Use the "reference" or "fast" kernels inside a `with` block; the previous set comes back after.

    Args:
        name: "reference" or "fast".

    Raises:
        ValueError: any other name (at construction, before the block runs).

    Example:
        >>> with autograd.kernels("reference"):     # doctest: +SKIP
        ...     loss = model_loss(batch); loss.backward()   # step into plain NumPy backward rules
    """

    get = staticmethod(get)
    set_kernels = staticmethod(set_kernels)
    get_kernels = staticmethod(get_kernels)

    def __init__(self, name: str) -> None:
        self.name = _checked(name, "kernels: name")
        self.previous: list[str] = []

    def __enter__(self) -> kernels:
        global _active
        self.previous.append(_active)  # None while a bad MINIGPT_KERNELS waits to be reported
        _active = self.name
        return self

    def __exit__(self, *exc_info) -> None:
        global _active
        _active = self.previous.pop()
