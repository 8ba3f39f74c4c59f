"""Fast rotary position embeddings: the two halves rotated into one preallocated output.

What is different from `autograd/reference/rope.py` (same results to rounding, see
tests/test_llama_layers.py): no concatenated rotate_half(x) array; each half of the output is
written in place, out1 = x1 cos1 - x2 sin1 and out2 = x2 cos2 + x1 sin2, with one temporary of
half the size; the same for the gradient.
"""

from __future__ import annotations

import numpy as np

from autograd.function import Function

__all__ = ["Rope"]


class Rope(Function):
    """out1 = x1 cos1 - x2 sin1, out2 = x2 cos2 + x1 sin2 (x1, x2 the halves of the last dimension).

    Backward (the transposed rotation): dx1 = g1 cos1 + g2 sin2, dx2 = g2 cos2 - g1 sin1.
    """

    def forward(self, x, cos, sin):
        half = x.shape[-1] // 2
        shape = np.broadcast_shapes(x.shape, cos.shape, sin.shape)
        out = np.empty(shape, x.dtype)
        _rotate(x[..., :half], x[..., half:], cos, sin, out, half, sign=1)
        self.cos, self.sin = cos, sin
        return out

    def backward(self, dout):
        half = dout.shape[-1] // 2
        dx = np.empty(dout.shape, dout.dtype)
        _rotate(dout[..., :half], dout[..., half:], self.cos, self.sin, dx, half, sign=-1)
        return dx


def _rotate(a1, a2, cos, sin, out, half: int, sign: int) -> None:
    """out = (a1 cos1 - sign a2 sin1', a2 cos2 + sign a1 sin2'): forward (sign 1) with sin1' = sin1,
    sin2' = sin2; backward (sign -1) with the halves of sin swapped, which is the transpose."""
    cos1, cos2 = cos[..., :half], cos[..., half:]
    sin1, sin2 = sin[..., :half], sin[..., half:]
    if sign < 0:
        sin1, sin2 = sin2, sin1
    out1, out2 = out[..., :half], out[..., half:]
    np.multiply(a1, cos1, out=out1)
    temporary = a2 * sin1
    if sign > 0:
        out1 -= temporary
    else:
        out1 += temporary
    np.multiply(a2, cos2, out=out2)
    np.multiply(a1, sin2, out=temporary)
    if sign > 0:
        out2 += temporary
    else:
        out2 -= temporary
