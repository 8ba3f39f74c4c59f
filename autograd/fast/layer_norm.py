"""Fast layer norm: rows normalised in place, shared among threads.

What is different from `autograd/reference/layer_norm.py` (same results to rounding, see
tests/test_kernels.py): x_hat and dx are computed in preallocated buffers by in-place passes, the
row dot products use `einsum` (one pass, no (N, C) temporary), and the rows are shared among the
threads (`parallel_for`: rows are independent, so the result is bit-identical for any number of
threads); the sums over rows (dweight, dbias) stay in one thread so that their order never changes.
"""

from __future__ import annotations

import numpy as np

from autograd.function import Function
from autograd.parallel import GRAIN_SIZE, parallel_for

__all__ = ["LayerNorm"]


class LayerNorm(Function):
    """out = (x - mean) * rstd * weight + bias over the last dimension (C).

    mean and the *biased* variance (divide by C, as GPT-2 and PyTorch do) are per row;
    rstd = 1 / sqrt(var + eps); x_hat = (x - mean) * rstd.

    Backward, with dx_hat = dout * weight (derivation as in llm.c's layernorm tutorial):
        dweight = sum over rows of dout * x_hat
        dbias   = sum over rows of dout
        dx      = rstd * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))
    Inputs: x, weight, bias (`layer_norm` passes constants 1 and 0 for an omitted weight or bias).
    """

    TORCH_NAME = "NativeLayerNormBackward0"

    def forward(self, x, weight, bias, eps):
        channels = x.shape[-1]
        rows_x = x.reshape(-1, channels)  # (N, C); a view when x is contiguous
        x_hat = np.empty(rows_x.shape, x.dtype)
        rstd = np.empty((rows_x.shape[0], 1), x.dtype)
        out = np.empty(rows_x.shape, x.dtype)
        dtype = x.dtype.type

        def rows(start: int, stop: int) -> None:  # each row is normalised on its own
            x_rows, x_hat_rows, out_rows = rows_x[start:stop], x_hat[start:stop], out[start:stop]
            mean = np.mean(x_rows, axis=-1, keepdims=True)
            np.subtract(x_rows, mean, out=x_hat_rows)  # centred; x_hat after the scaling below
            # Row dot products with einsum: one pass and no (N, C) temporary, unlike mean(c * c).
            variance = np.einsum("nc,nc->n", x_hat_rows, x_hat_rows)[:, None] / dtype(channels)
            rstd_rows = rstd[start:stop]
            np.sqrt(variance + dtype(eps), out=rstd_rows)
            np.reciprocal(rstd_rows, out=rstd_rows)  # rstd = 1 / sqrt(var + eps)
            x_hat_rows *= rstd_rows
            np.multiply(x_hat_rows, weight, out=out_rows)
            out_rows += bias

        parallel_for(0, rows_x.shape[0], max(1, GRAIN_SIZE // max(channels, 1)), rows)
        self.x_hat, self.rstd, self.weight = x_hat, rstd, weight
        return out.reshape(x.shape)

    def backward(self, dout):
        x_hat, rstd, weight = self.x_hat, self.rstd, self.weight  # x_hat (N, C), rstd (N, 1)
        channels = x_hat.shape[-1]
        rows_dout = dout.reshape(-1, channels)
        dtype = x_hat.dtype.type
        dx = dweight = dbias = None
        if self.needs_input_grad[0]:
            dx = np.empty(x_hat.shape, x_hat.dtype)

            def rows(start: int, stop: int) -> None:
                x_hat_rows, dx_rows = x_hat[start:stop], dx[start:stop]
                np.multiply(rows_dout[start:stop], weight, out=dx_rows)  # dx_hat = dout * weight
                mean_dx_hat = np.mean(dx_rows, axis=-1, keepdims=True)
                mean_dx_hat_x_hat = np.einsum("nc,nc->n", dx_rows, x_hat_rows)[:, None] / dtype(channels)
                # In dx_hat's buffer: dx = rstd * (dx_hat - mean(dx_hat) - x_hat * mean(dx_hat * x_hat))
                dx_rows -= mean_dx_hat
                dx_rows -= x_hat_rows * mean_dx_hat_x_hat
                dx_rows *= rstd[start:stop]

            parallel_for(0, x_hat.shape[0], max(1, GRAIN_SIZE // max(channels, 1)), rows)
            dx = dx.reshape(dout.shape)
        # Sums over rows: kept in one thread, so that their order (and result) never changes.
        if self.needs_input_grad[1]:
            dweight = np.einsum("nc,nc->c", rows_dout, x_hat)
        if self.needs_input_grad[2]:
            dbias = np.sum(rows_dout, axis=0)
        return dx, dweight, dbias
