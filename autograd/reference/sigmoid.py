"""The logistic sigmoid and its logarithm, forward and backward (book appendix A.3; ch. 7's DPO).

The reference kernels (there is no faster version: `autograd/fast/sigmoid.py` uses these). Both
are written so that no exp overflows and no digit is lost for large |x|.

Shapes: x of any shape; every output and gradient has x's shape and dtype.

References: torch.sigmoid and torch.nn.functional.logsigmoid; Goodfellow, Bengio & Courville,
"Deep Learning", section 3.10 (the logistic sigmoid and softplus).
"""

from __future__ import annotations

import numpy as np

from autograd.function import Function

__all__ = ["Sigmoid", "LogSigmoid"]


def _stable_sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)) without overflow: exp is only taken of -|x| <= 0.

    >>> _stable_sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    array([0. , 0.5, 1. ])
    """
    e = np.exp(-np.abs(x))  # (...) in (0, 1]
    one = x.dtype.type(1)
    return np.where(x >= 0, one / (one + e), e / (one + e))  # (...) equal formulas, each safe on its side


class Sigmoid(Function):
    """out = sigmoid(x) = 1 / (1 + exp(-x)).   Derivative: dx = dout * out * (1 - out).

    Computed as 1 / (1 + e) for x >= 0 and e / (1 + e) for x < 0 with e = exp(-|x|), so no exp
    overflows for large |x|. The output is saved: the derivative is a function of it.
    References: torch.sigmoid; book appendix A.3 (logistic regression).
    """

    def forward(self, x):
        out = _stable_sigmoid(x)  # 1. (...)
        self.out = out  # saved: the derivative is a function of the output
        return out

    def backward(self, dout):
        out = self.out  # (...)
        # 1. reverses out = sigmoid(x): d sigmoid / dx = sigmoid (1 - sigmoid).
        return dout * out * (1 - out)  # (...)


class LogSigmoid(Function):
    """out = log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)).   Derivative: dx = dout * sigmoid(-x).

    The min/log1p form is exact for large |x| where log(sigmoid(x)) would give log(0) = -inf
    (x = -200) or lose every digit (x = 40); sigmoid(-x) = 1 - sigmoid(x) is computed stably too.
    References: torch.nn.functional.logsigmoid; the DPO loss (Rafailov et al. 2023, eq. 7).
    """

    def forward(self, x):
        self.x = x  # saved: the derivative is sigmoid(-x)
        return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))  # 1. (...) out = log(sigmoid(x))

    def backward(self, dout):
        # 1. reverses out = min(x, 0) - log1p(exp(-|x|)) = log(sigmoid(x)):
        #    d log(sigmoid(x)) / dx = sigmoid'(x) / sigmoid(x) = 1 - sigmoid(x) = sigmoid(-x).
        return dout * _stable_sigmoid(-self.x)  # (...)
