"""Fast SiLU: in-place passes over halves of the array, one per thread.

What is different from `autograd/reference/silu.py` (same results to rounding, see
tests/test_llama_layers.py): the sigmoid is computed as 1 / (1 + exp(-x)) in one preallocated
buffer (exp(-x) overflowing to inf for x < -88 in float32 gives 1 / inf = 0, the right limit, so
no branch is needed; the overflow warning is silenced), and the element-wise passes are shared
among the threads (`fast/gelu.py`'s `_elementwise_parallel`).
"""

from __future__ import annotations

import numpy as np

from autograd.fast.gelu import _elementwise_parallel
from autograd.function import Function

__all__ = ["Silu"]


class Silu(Function):
    """SiLU(x) = x * s, s = sigmoid(x);  dx = dout * s * (1 + x (1 - s))."""

    def forward(self, x):
        s, out = np.empty(x.shape, x.dtype), np.empty(x.shape, x.dtype)
        _elementwise_parallel(_silu_forward, x, s, out)
        self.x, self.s = x, s
        return out

    def backward(self, dout):
        dx = np.empty(self.x.shape, self.x.dtype)
        _elementwise_parallel(_silu_backward, self.x, self.s, np.ascontiguousarray(dout), dx)
        return dx


def _silu_forward(x: np.ndarray, s: np.ndarray, out: np.ndarray) -> None:
    """Write s = sigmoid(x) and out = x * s for one part; each line is one in-place pass."""
    with np.errstate(over="ignore"):  # exp(-x) = inf for very negative x: s = 1 / inf = 0, exact
        np.negative(x, out=s)
        np.exp(s, out=s)
    s += x.dtype.type(1.0)
    np.reciprocal(s, out=s)
    np.multiply(x, s, out=out)


def _silu_backward(x: np.ndarray, s: np.ndarray, dout: np.ndarray, dx: np.ndarray) -> None:
    """Write dx = dout * s * (1 + x (1 - s)) for one part."""
    one = x.dtype.type(1.0)
    np.subtract(one, s, out=dx)
    dx *= x
    dx += one
    dx *= s
    dx *= dout
