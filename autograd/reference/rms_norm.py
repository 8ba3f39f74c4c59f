"""RMS normalisation over the channels (Llama's and Qwen3's norm), forward and backward in plain NumPy.

Shape letters: (..., C), any leading dimensions (usually B, T, or B, H, T for Qwen3's per-head
q/k norm) and C channels; "rows" are the (...) positions, each normalised on its own.
"""

from __future__ import annotations

import numpy as np

from autograd.function import Function

__all__ = ["RMSNorm"]


class RMSNorm(Function):
    """out = x / sqrt(mean(x^2) + eps) * weight, over the last dimension (C).

    Unlike LayerNorm there is no centring and no bias: per row ms = sum(x^2) / C,
    rstd = 1 / sqrt(ms + eps), x_hat = x * rstd.

    Derivative, with dx_hat = dout * weight:
        dweight = sum over rows of dout * x_hat
        dx = rstd * (dx_hat - x_hat * mean(dx_hat * x_hat))
    `backward` reaches the same dx by reversing the four forward lines one at a time.

    Args (of `forward`):
        x: float array (..., C). weight: the scale (C,), x's dtype (`autograd.functional.rms_norm`
            passes a constant 1 for an omitted weight).
        eps: number added to the mean square (not to its root) before the square root.

    Returns:
        out: array (..., C), x's dtype. `backward(dout)` returns (dx (..., C), dweight (C,)),
        None for an input that needs no gradient.

    Raises: nothing of its own: `autograd.functional.rms_norm` checks the shapes, dtypes and eps.

    References: Zhang & Sennrich 2019, "Root Mean Square Layer Normalization", eq. 4;
    torch.nn.functional.rms_norm; Raschka, LLMs-from-scratch ch05/07_gpt_to_llama (RMSNorm).
    """

    def forward(self, x, weight, eps):
        ms = np.mean(x * x, axis=-1, keepdims=True)  # 1. (..., 1) mean square of each row
        rstd = 1 / np.sqrt(ms + x.dtype.type(eps))  # 2. (..., 1); eps cast: no float64 from a NumPy eps
        x_hat = x * rstd  # 3. (..., C) root mean square ~1
        out = x_hat * weight  # 4. (..., C)
        # Saved: x, rstd and weight; backward recomputes x_hat = x * rstd (one product).
        self.x, self.rstd, self.weight = x, rstd, weight
        return out

    def backward(self, dout):
        x, rstd, weight = self.x, self.rstd, self.weight  # (..., C), (..., 1), (C,)
        channels = x.shape[-1]
        dx = dweight = None
        # 4. reverses out = x_hat * weight: weight is shared by every row.
        if self.needs_input_grad[1]:
            x_hat = x * rstd  # (..., C) forward line 3 again, the same values
            dweight = np.sum((dout * x_hat).reshape(-1, channels), axis=0)  # (N, C) -> (C,)
        if not self.needs_input_grad[0]:
            return dx, dweight
        dx_hat = dout * weight  # (..., C)
        # 3. reverses x_hat = x * rstd: rstd is shared by the row, so its gradient is a row sum.
        dx = dx_hat * rstd  # (..., C)
        drstd = np.sum(dx_hat * x, axis=-1, keepdims=True)  # (..., 1)
        # 2. reverses rstd = (ms + eps)^(-1/2): d/dms = -1/2 (ms + eps)^(-3/2) = -rstd^3 / 2.
        dms = -0.5 * rstd**3 * drstd  # (..., 1)
        # 1. reverses ms = mean(x^2): d/dx = 2 x / C.
        dx = dx + (2 / channels) * x * dms  # (..., C)
        return dx, dweight
