"""Fast linear: a few rows multiplied as (W x^T)^T, which OpenBLAS runs faster.

What is different from `autograd/reference/linear.py` (same results to rounding, see
tests/test_kernels.py): for at most `_FEW_ROWS` rows (each step of cached generation) the
forward product is computed transposed; the measurement is at `_FEW_ROWS`.
"""

from __future__ import annotations

import numpy as np

from autograd.function import Function
from autograd.reference.linear import linear_torch_name

__all__ = ["Linear"]


# Up to this many rows, Linear's forward computes (W x^T)^T instead of x W^T. Measured with
# OpenBLAS 0.3.31 on one thread of an AMD EPYC, x W^T / (W x^T)^T in ms: 8 rows of GPT-2 small's
# 768 -> 3072 layer 1.44 / 1.02 (other runs 16.9 / 1.01), 768 -> 768 0.40 / 0.15, the output head
# 768 -> 50257 194 / 130; at 64 rows the two are even.
_FEW_ROWS = 32


class Linear(Function):
    """y = x W^T + b, with weight W of shape (out, in) as in PyTorch.

    Backward, with x and dout flattened to rows (N, in) and (N, out):
        dx = dout W,   dW = dout^T x,   db = sum over rows of dout.
    All three are single 2-D BLAS products or sums over contiguous float32 rows.
    Inputs: x, weight[, bias].
    """

    @classmethod
    def torch_name_of(cls, inputs, options):
        """PyTorch's name for F.linear's node: see reference.linear.linear_torch_name."""
        return linear_torch_name(inputs[0].ndim, len(inputs) > 2 and inputs[2] is not None)

    def forward(self, x, weight, bias=None):
        self.x, self.weight = x, weight
        rows = x.reshape(-1, x.shape[-1])  # (N, in)
        if rows.shape[0] <= _FEW_ROWS:
            # The same product as W x^T, transposed back: OpenBLAS runs it 2-17x faster for a
            # few rows (each step of cached generation: N = batch size) than rows @ W^T.
            out = np.ascontiguousarray((weight @ rows.T).T)  # (out, in) @ (in, N) -> (out, N) -> (N, out)
        else:
            out = rows @ weight.T  # (N, in) @ (in, out) -> (N, out)
        if bias is not None:
            out += bias
        return out.reshape(x.shape[:-1] + (weight.shape[0],))

    def backward(self, dout):
        x, weight = self.x, self.weight
        rows_dout = dout.reshape(-1, weight.shape[0])  # (N, out)
        dx = dweight = dbias = None
        if self.needs_input_grad[0]:
            dx = (rows_dout @ weight).reshape(x.shape)  # (N, out) @ (out, in) -> (N, in)
        if self.needs_input_grad[1]:
            dweight = rows_dout.T @ x.reshape(-1, x.shape[-1])  # (out, N) @ (N, in)
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            dbias = rows_dout.sum(axis=0)
        return dx, dweight, dbias
