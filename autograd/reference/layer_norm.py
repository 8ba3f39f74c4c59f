"""Layer normalisation over the channels (book ch. 4.2), forward and backward in plain NumPy.

Shape letters: (..., C), any leading dimensions (usually B, T) and C channels (emb_dim); "rows"
are the (...) positions, each normalised on its own.
"""

from __future__ import annotations

import numpy as np

from autograd.function import Function

__all__ = ["LayerNorm"]


class LayerNorm(Function):
    """out = (x - mean) / sqrt(var + eps) * weight + bias, over the last dimension (C).

    Per row: mean = sum(x) / C and the *biased* variance var = sum((x - mean)^2) / C (divided by C,
    as GPT-2 and PyTorch do); rstd = 1 / sqrt(var + eps); x_hat = (x - mean) * rstd.

    Derivative, with dx_hat = dout * weight (llm.c's layernorm tutorial derives the same):
        dweight = sum over rows of dout * x_hat,   dbias = sum over rows of dout
        dx = rstd * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))
    `backward` reaches the same dx by reversing the six forward lines one at a time.

    Args (of `forward`):
        x: float array (..., C). weight: the scale (C,) (the book's `scale`). bias: the shift (C,)
            (the book's `shift`); one dtype for all three. `autograd.functional.layer_norm` passes
            constants 1 and 0 for an omitted weight or bias.
        eps: number added to the variance (not the standard deviation) before the square root.

    Returns:
        out: array (..., C), x's dtype. `backward(dout)` returns (dx (..., C), dweight (C,),
        dbias (C,)), None for an input that needs no gradient.

    Raises: nothing of its own: `autograd.functional.layer_norm` checks the shapes, dtypes and eps.

    References: Ba, Kiros & Hinton 2016, "Layer Normalization", eqs. 3-4 (the statistics, the gain
    and bias); Raschka, "Build a Large Language Model (From Scratch)", ch. 4.2;
    torch.nn.functional.layer_norm.
    """

    TORCH_NAME = "NativeLayerNormBackward0"

    def forward(self, x, weight, bias, eps):
        mean = np.mean(x, axis=-1, keepdims=True)  # 1. (..., 1)
        xc = x - mean  # 2. (..., C) centred
        var = np.mean(xc * xc, axis=-1, keepdims=True)  # 3. (..., 1) biased: divided by C
        rstd = 1 / np.sqrt(var + x.dtype.type(eps))  # 4. (..., 1); eps cast: no float64 from a NumPy eps
        x_hat = xc * rstd  # 5. (..., C) mean 0, variance ~1
        out = x_hat * weight + bias  # 6. (..., C)
        # Saved: xc, rstd and weight; backward recomputes x_hat = xc * rstd (one product).
        self.xc, self.rstd, self.weight = xc, rstd, weight
        return out

    def backward(self, dout):
        xc, rstd, weight = self.xc, self.rstd, self.weight  # (..., C), (..., 1), (C,)
        channels = xc.shape[-1]
        dx = dweight = dbias = None
        # 6. reverses out = x_hat * weight + bias: weight and bias are shared by every row.
        if self.needs_input_grad[2]:
            dbias = np.sum(dout.reshape(-1, channels), axis=0)  # (N, C) -> (C,)
        if self.needs_input_grad[1]:
            x_hat = xc * rstd  # (..., C) forward line 5 again, the same values
            dweight = np.sum((dout * x_hat).reshape(-1, channels), axis=0)  # (N, C) -> (C,)
        if not self.needs_input_grad[0]:
            return dx, dweight, dbias
        dx_hat = dout * weight  # (..., C)
        # 5. reverses x_hat = xc * rstd: rstd is shared by the row, so its gradient is a row sum.
        dxc = dx_hat * rstd  # (..., C)
        drstd = np.sum(dx_hat * xc, axis=-1, keepdims=True)  # (..., 1)
        # 4. reverses rstd = (var + eps)^(-1/2): d/dvar = -1/2 (var + eps)^(-3/2) = -rstd^3 / 2.
        dvar = -0.5 * rstd**3 * drstd  # (..., 1)
        # 3. reverses var = mean(xc^2): d/dxc = 2 xc / C.
        dxc = dxc + (2 / channels) * xc * dvar  # (..., C)
        # 2. reverses xc = x - mean: x passes through, mean gets minus the row sum.
        dmean = -np.sum(dxc, axis=-1, keepdims=True)  # (..., 1)
        # 1. reverses mean = sum(x) / C: every x of the row gets dmean / C.
        dx = dxc + dmean / channels  # (..., C)
        return dx, dweight, dbias
