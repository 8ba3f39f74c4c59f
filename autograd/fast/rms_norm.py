"""Fast RMS norm: rows normalised in place, shared among threads.

What is different from `autograd/reference/rms_norm.py` (same results to rounding, see
tests/test_llama_layers.py): x_hat and dx are computed in preallocated buffers by in-place passes,
the row dot products use `einsum` (one pass, no (N, C) temporary), and the rows are shared among
the threads (`parallel_for`, as `fast/layer_norm.py`: rows are independent, so the result is
bit-identical for any number of threads); the sum over rows (dweight) stays in one thread.
"""

from __future__ import annotations

import numpy as np

from autograd.function import Function
from autograd.parallel import GRAIN_SIZE, parallel_for

__all__ = ["RMSNorm"]


class RMSNorm(Function):
    """out = x * rstd * weight over the last dimension (C), rstd = 1 / sqrt(mean(x^2) + eps).

    Backward, with dx_hat = dout * weight and x_hat = x * rstd:
        dweight = sum over rows of dout * x_hat
        dx      = rstd * (dx_hat - x_hat * mean(dx_hat * x_hat))
    """

    def forward(self, x, weight, eps):
        channels = x.shape[-1]
        rows_x = np.ascontiguousarray(x).reshape(-1, channels)  # (N, C)
        x_hat = np.empty(rows_x.shape, x.dtype)
        rstd = np.empty((rows_x.shape[0], 1), x.dtype)
        out = np.empty(rows_x.shape, x.dtype)
        dtype = x.dtype.type

        def rows(start: int, stop: int) -> None:  # each row is normalised on its own
            x_rows, x_hat_rows, rstd_rows = rows_x[start:stop], x_hat[start:stop], rstd[start:stop]
            mean_square = np.einsum("nc,nc->n", x_rows, x_rows)[:, None] / dtype(channels)
            np.sqrt(mean_square + dtype(eps), out=rstd_rows)
            np.reciprocal(rstd_rows, out=rstd_rows)  # rstd = 1 / sqrt(ms + eps)
            np.multiply(x_rows, rstd_rows, out=x_hat_rows)
            np.multiply(x_hat_rows, weight, out=out[start:stop])

        parallel_for(0, rows_x.shape[0], max(1, GRAIN_SIZE // max(channels, 1)), rows)
        self.x_hat, self.rstd, self.weight = x_hat, rstd, weight
        return out.reshape(x.shape)

    def backward(self, dout):
        x_hat, rstd, weight = self.x_hat, self.rstd, self.weight  # x_hat (N, C), rstd (N, 1)
        channels = x_hat.shape[-1]
        rows_dout = np.ascontiguousarray(dout).reshape(-1, channels)
        dtype = x_hat.dtype.type
        dx = dweight = None
        if self.needs_input_grad[0]:
            dx = np.empty(x_hat.shape, x_hat.dtype)

            def rows(start: int, stop: int) -> None:
                x_hat_rows, dx_rows = x_hat[start:stop], dx[start:stop]
                np.multiply(rows_dout[start:stop], weight, out=dx_rows)  # dx_hat = dout * weight
                mean_dx_hat_x_hat = np.einsum("nc,nc->n", dx_rows, x_hat_rows)[:, None] / dtype(channels)
                # In dx_hat's buffer: dx = rstd * (dx_hat - x_hat * mean(dx_hat * x_hat))
                dx_rows -= x_hat_rows * mean_dx_hat_x_hat
                dx_rows *= rstd[start:stop]

            parallel_for(0, x_hat.shape[0], max(1, GRAIN_SIZE // max(channels, 1)), rows)
            dx = dx.reshape(dout.shape)
        if self.needs_input_grad[1]:  # a sum over rows: one thread, so its order never changes
            dweight = np.einsum("nc,nc->c", rows_dout, x_hat)
        return dx, dweight
