"""Fast softmax and log-softmax: the reference's formulas with in-place passes.

What is different from `autograd/reference/softmax.py` (same results to rounding, see
tests/test_kernels.py): the exponentials are written into the array of `x - max` (one (.., V)
temporary instead of three) and divided in place; log-softmax saves the probabilities for backward
instead of recomputing them.
"""

from __future__ import annotations

import numpy as np

from autograd.function import Function
from autograd.reference.softmax import _axis

__all__ = ["Softmax", "LogSoftmax"]


def _shifted_exp(x: np.ndarray, axis: int):
    """exp(x - max) along `axis` and the max, safe for rows that are entirely -inf.

    Softmax is shift invariant (softmax(x) = softmax(x - c)), so subtracting the row maximum
    changes nothing but keeps exp from overflowing. A row of only -inf (everything masked) has
    max -inf; using 0 instead makes every exp(-inf) = 0 rather than exp(nan).
    """
    row_max = np.max(x, axis=axis, keepdims=True)
    row_max[~np.isfinite(row_max)] = 0
    shifted = x - row_max
    np.exp(shifted, out=shifted)
    return shifted, row_max


class Softmax(Function):
    """probs = exp(x - max) / sum(exp(x - max)) along `dim`.

    Backward (the softmax Jacobian is diag(p) - p p^T):
        dx = p * (dout - sum(dout * p, dim))
    where p = 0 (a -inf input) the gradient is exactly 0. A row that is entirely -inf gives
    probabilities 0 (not NaN) and gradient 0.
    """

    def forward(self, x, dim):
        self.axis = _axis(dim, x.ndim, "softmax")
        exps, _ = _shifted_exp(x, self.axis)
        total = np.sum(exps, axis=self.axis, keepdims=True)
        total[total == 0] = 1  # all -inf row: 0 / 1 = 0 instead of 0 / 0
        exps /= total
        self.probs = exps
        return exps

    def backward(self, dout):
        probs = self.probs
        return probs * (dout - np.sum(dout * probs, axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    """out = x - logsumexp(x) along `dim`, with logsumexp(x) = max + log(sum(exp(x - max))).

    Backward: dx = dout - softmax(x) * sum(dout, dim). At a -inf input (a masked position) the
    output is the constant -inf, so its gradient is set to exactly 0; a row of only -inf gives
    -inf everywhere (never NaN) and zero gradient.
    """

    def forward(self, x, dim):
        self.axis = _axis(dim, x.ndim, "log_softmax")
        exps, row_max = _shifted_exp(x, self.axis)
        total = np.sum(exps, axis=self.axis, keepdims=True)
        # A row of only -inf has total 0: log(1) = 0 keeps its output -inf (log of probability 0)
        # instead of -inf - (-inf) = NaN.
        total[total == 0] = 1
        out = x - row_max - np.log(total)
        if any(self.needs_input_grad):
            self.probs = exps / total
            self.masked = np.isneginf(x)
        return out

    def backward(self, dout):
        dx = dout - self.probs * np.sum(dout, axis=self.axis, keepdims=True)
        dx[self.masked] = 0
        return dx
