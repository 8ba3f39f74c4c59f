"""Softmax and log-softmax, forward and backward in plain NumPy (book ch. 3.3.1; ch. 5.1.2).

The reference kernels: what a learner reads and steps into from `loss.backward()`. Each backward
line says which forward line it reverses. `autograd/fast/softmax.py` computes the same values with
in-place passes; tests/test_kernels.py checks that the two agree.

Shapes: x (..., V, ...) with the normalised dimension `dim` of size V anywhere; 1 marks the kept
size-1 dimension of a sum or max over `dim`.

References: Bridle 1990 (softmax); torch.nn.functional.softmax and log_softmax.
"""

from __future__ import annotations

import numpy as np

from autograd.function import Function

__all__ = ["Softmax", "LogSoftmax"]


def _axis(dim: int, ndim: int, function: str) -> int:
    """`dim` as an axis in [0, ndim) (negative counts from the end); a 0-d array has axis 0.

    Raises IndexError naming the function, `dim` and the number of dimensions.
    """
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"{function}: dim={dim} is out of range for a tensor with {ndim} dimensions")
    return dim % max(ndim, 1)


class Softmax(Function):
    """p = exp(x - max(x)) / sum(exp(x - max(x))) along `dim`: values in [0, 1] that sum to 1.

    Derivative: the Jacobian of one row is diag(p) - p p^T, so for an upstream gradient dout
        dx = p * (dout - sum(dout * p, dim))
    Subtracting the row max changes nothing (softmax(x) = softmax(x - c)) but keeps exp from
    overflowing. A -inf input (a masked position) gets p = 0 and exactly 0 gradient; a row of only
    -inf gives p = 0 everywhere (not NaN).

    Shapes: x (..., V, ...) -> p of x's shape and dtype.
    References: torch.nn.functional.softmax; book ch. 3.3.1.
    """

    def forward(self, x, dim):
        self.axis = _axis(dim, x.ndim, "softmax")
        row_max = np.max(x, axis=self.axis, keepdims=True)  # (..., 1, ...)
        row_max = np.where(np.isfinite(row_max), row_max, 0)  # (..., 1, ...) a row of only -inf: exp(-inf) = 0
        exps = np.exp(x - row_max)  # 1. (..., V, ...) in (0, 1]
        total = np.sum(exps, axis=self.axis, keepdims=True)  # 2. (..., 1, ...)
        total = np.where(total == 0, 1, total)  # (..., 1, ...) a row of only -inf: 0 / 1 = 0 instead of 0 / 0
        probs = exps / total  # 3. (..., V, ...)
        self.probs = probs  # saved: the derivative is a function of p alone
        return probs

    def backward(self, dout):
        probs = self.probs  # (..., V, ...)
        # 3. reverses probs = exps / total,
        # 2. reverses total = sum(exps),
        # 1. reverses exps = exp(x - row_max), all three at once (row_max cancels out of probs):
        # dx_i = sum_j dout_j dp_j/dx_i = p_i (dout_i - sum_j dout_j p_j)
        row_dot = np.sum(dout * probs, axis=self.axis, keepdims=True)  # (..., 1, ...)
        dx = probs * (dout - row_dot)  # (..., V, ...)
        return dx


class LogSoftmax(Function):
    """out = x - logsumexp(x) along `dim`, logsumexp(x) = max + log(sum(exp(x - max))).

    Derivative: d out_j / d x_i = [i == j] - softmax(x)_i, so
        dx = dout - softmax(x) * sum(dout, dim)
    A -inf input (a masked position) stays -inf (the log of probability 0), a constant: its
    gradient is exactly 0. A row of only -inf gives -inf everywhere (never NaN) and zero gradient.

    Shapes: x (..., V, ...) -> out of x's shape and dtype.
    References: torch.nn.functional.log_softmax; book ch. 5.1.2 (cross-entropy as log-probabilities).
    """

    def forward(self, x, dim):
        self.axis = _axis(dim, x.ndim, "log_softmax")
        row_max = np.max(x, axis=self.axis, keepdims=True)  # (..., 1, ...)
        row_max = np.where(np.isfinite(row_max), row_max, 0)  # (..., 1, ...) a row of only -inf: exp gives 0
        shifted = x - row_max  # 1. (..., V, ...), at most 0
        total = np.sum(np.exp(shifted), axis=self.axis, keepdims=True)  # 2. (..., 1, ...)
        total = np.where(total == 0, 1, total)  # (..., 1, ...) a row of only -inf: log(1) = 0 keeps it -inf
        out = shifted - np.log(total)  # 3. (..., V, ...)
        # NOTE: x - (max + log(total)) would round the sum to x's precision first (float32 at
        # x = 1000 keeps 5 digits); subtracting the max first keeps every digit of the result.
        self.out = out  # saved: the derivative is a function of the output, softmax(x) = exp(out)
        return out

    def backward(self, dout):
        out = self.out  # (..., V, ...)
        probs = np.exp(out)  # (..., V, ...) softmax(x): lines 1-3 give out = log(softmax(x))
        # 3. reverses out = shifted - log(total): shifted gets dout; total, shared by the row, gets
        #    dtotal = -sum(dout) / total (sum over the row).
        # 2. reverses total = sum(exp(shifted)): shifted also gets exp(shifted) * dtotal = -probs * sum(dout).
        # 1. reverses shifted = x - row_max: x passes through (row_max cancels out of out).
        dx = dout - probs * np.sum(dout, axis=self.axis, keepdims=True)  # (..., V, ...)
        dx = np.where(np.isneginf(out), 0, dx)  # (..., V, ...) a -inf input's output is the constant -inf
        return dx.astype(out.dtype, copy=False)
