"""Fast dropout: the reference's mask draw, the scaling done in place.

What is different from `autograd/reference/dropout.py` (the same values and the same mask, see
tests/test_kernels.py): the output and the gradient are scaled in place (one temporary fewer).
The mask comes from `dropout_keep_mask`, the one mask draw of the engine (PyTorch's bernoulli_
mask, vectorised on 32-bit halves of the raw words).
"""

from __future__ import annotations

from autograd.function import Function
from autograd.reference.dropout import dropout_keep_mask, dropout_scale

__all__ = ["Dropout", "dropout_keep_mask"]


class Dropout(Function):
    """out = x * keep / (1 - p), keep_i ~ Bernoulli(1 - p)  (inverted dropout).

    Backward: dx = dout * keep / (1 - p). Scaling at training time keeps the expected value of
    each activation unchanged, so evaluation needs no rescaling (Srivastava et al. 2014, sec. 10).
    The mask is saved as bools (1 byte per element), not as a float multiplier.
    """

    TORCH_NAME = "MulBackward0"  # PyTorch (CPU) multiplies by the scaled mask

    def forward(self, x, p, rng):
        self.keep, p_drawn = dropout_keep_mask(rng, x.shape, p)
        self.scale = dropout_scale(p_drawn, x.dtype)
        out = x * self.scale
        out *= self.keep
        return out

    def backward(self, dout):
        dx = dout * self.scale
        dx *= self.keep
        return dx
