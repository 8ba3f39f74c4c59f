"""SiLU (swish), the activation of Llama's and Qwen3's SwiGLU feed-forward, forward and backward in plain NumPy.

Shape letters: any shape `(...)`; the op is element-wise.
"""

from __future__ import annotations

import numpy as np

from autograd.function import Function

__all__ = ["Silu"]


class Silu(Function):
    """SiLU(x) = x * sigmoid(x).

        s = sigmoid(x) = 1 / (1 + exp(-x)),   out = x s
        dout/dx = s + x s (1 - s)

    The sigmoid is computed stably: exp of a negative number only (exp(-|x|)), so no overflow
    for large |x| (for x >= 0, s = 1 / (1 + e); for x < 0, s = e / (1 + e), e = exp(-|x|)).

    Args (of `forward`):
        x: float array (...), float32 or float64.

    Returns:
        out: array (...), x's dtype. `backward(dout)` returns dx (...), x's dtype.

    Raises: nothing of its own: `autograd.functional.silu` checks x's dtype.

    References: Elfwing, Uchibe & Doya 2018, "Sigmoid-Weighted Linear Units" (SiLU); Ramachandran
    et al. 2017 (Swish); Shazeer 2020, "GLU Variants Improve Transformer" (SwiGLU);
    torch.nn.functional.silu.
    """

    def forward(self, x):
        e = np.exp(-np.abs(x))  # 1. (...) in (0, 1]: never overflows
        s = np.where(x >= 0, 1 / (1 + e), e / (1 + e))  # 2. (...) sigmoid(x)
        out = x * s  # 3. (...)
        # Saved: x and s; backward needs sigmoid(x), recomputing it costs an exp.
        self.x, self.s = x, s
        return out

    def backward(self, dout):
        x, s = self.x, self.s  # (...)
        # 3. reverses out = x * s: x appears twice, directly and through s.
        dx = dout * s  # (...) the direct path
        ds = dout * x  # (...)
        # 2. and 1. reverse s = sigmoid(x): ds/dx = s (1 - s), whichever branch computed it.
        dx = dx + ds * s * (1 - s)  # (...)
        return dx
