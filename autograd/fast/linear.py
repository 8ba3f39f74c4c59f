"""Fast linear: a few rows multiplied as (W x^T)^T, which OpenBLAS runs faster.

What is different from `autograd/reference/linear.py` (same results to rounding, see
tests/test_kernels.py): for at most `_FEW_ROWS` rows (each step of cached generation) the
forward product is computed transposed; the measurement is at `_FEW_ROWS`.
"""

from __future__ import annotations

import numpy as np

from autograd.function import Function
from autograd.parallel import GRAIN_SIZE, get_num_threads, parallel_for_one_blas_thread
from autograd.reference.linear import linear_torch_name

__all__ = ["Linear"]


# Up to this many rows, Linear's forward computes (W x^T)^T instead of x W^T. Measured with
# OpenBLAS 0.3.31 on one thread of an AMD EPYC, x W^T / (W x^T)^T in ms: 8 rows of GPT-2 small's
# 768 -> 3072 layer 1.44 / 1.02 (other runs 16.9 / 1.01), 768 -> 768 0.40 / 0.15, the output head
# 768 -> 50257 194 / 130; at 64 rows the two are even.
_FEW_ROWS = 32

# Weight elements per piece of a few-row product shared among the engine's threads (see
# _few_rows_product): 4 GRAIN_SIZE, 2 MiB of float32 weights, about 0.1 ms of one core.
_WEIGHT_GRAIN = 4 * GRAIN_SIZE


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
            out = np.ascontiguousarray(_few_rows_product(weight, rows).T)  # (out, in) @ (in, N) -> (out, N) -> (N, out)
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


def _few_rows_product(weight: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """weight @ rows.T, (out, in) @ (in, N) -> (out, N), its output rows shared among the engine's threads.

    With more than one engine thread, each thread multiplies its own block of the weight's rows
    with OpenBLAS in one thread (`parallel_for_one_blas_thread`); OpenBLAS's own threads, which
    split each product and then wait for each other, lose on a busy machine: measured in cached
    generation of the Qwen3-100M benchmark (2 cores, load average 7-10), see docs/llama-qwen.md.
    Each output element is the same dot product of one weight row and one input row either way.
    """
    if get_num_threads() <= 1:
        return weight @ rows.T
    out = np.empty((weight.shape[0], rows.shape[0]), dtype=np.result_type(weight, rows))
    columns = rows.T

    def weight_rows(start: int, stop: int) -> None:
        np.matmul(weight[start:stop], columns, out=out[start:stop])

    parallel_for_one_blas_thread(0, weight.shape[0], max(1, _WEIGHT_GRAIN // max(weight.shape[1], 1)), weight_rows)
    return out
