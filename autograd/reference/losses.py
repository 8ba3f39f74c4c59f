"""Binary cross-entropy (on probabilities and on logits) and mean squared error (appendix A; ch. 4).

The reference kernels (there is no faster version: `autograd/fast/losses.py` uses these). Each
loss is computed per element, then reduced as torch's `reduction=` says: "mean", "sum" or "none".
`_reduce` is that last step and `_unreduce` its backward: d(reduced) / d(elementwise loss) * dout.

Shapes: input and target of one shape (...); the loss is 0-d, or (...) for reduction "none".

References: torch.nn.functional.binary_cross_entropy, binary_cross_entropy_with_logits, mse_loss;
book appendix A.3-A.4 (logistic regression), ch. 4.4 (print_gradients uses nn.MSELoss).
"""

from __future__ import annotations

import math

import numpy as np

from autograd.function import Function
from autograd.reference.sigmoid import _stable_sigmoid

__all__ = ["BinaryCrossEntropy", "BinaryCrossEntropyWithLogits", "MSELoss"]


def _reduce(loss: np.ndarray, reduction: str) -> np.ndarray:
    """The elementwise `loss` averaged, summed or kept (torch's `reduction=`), in its dtype."""
    if reduction == "none":
        return loss
    total = loss.sum() if reduction == "sum" else loss.mean()
    return np.asarray(total, dtype=loss.dtype)


def _unreduce(dout: np.ndarray, reduction: str, shape: tuple) -> np.ndarray:
    """d(reduced loss)/d(elementwise loss) times dout: the backward of `_reduce`, of `shape`.

    "none": dout itself; "sum": dout for every element; "mean": dout / (number of elements).
    """
    if reduction == "none":
        return dout
    count = math.prod(shape)
    scale = dout if reduction == "sum" else dout / dout.dtype.type(max(count, 1))
    return np.broadcast_to(scale, shape)


class BinaryCrossEntropy(Function):
    """L = -(y log p + (1 - y) log(1 - p)) per element, then reduced; y is a constant.

    Each log is clamped at -100 as PyTorch does, so p = 0 or 1 gives a finite loss.
    Derivative: dp = dout * (p - y) / max(p (1 - p), 1e-12) (PyTorch's epsilon), the derivative
    of the unclamped formula.
    Inputs: p (...) in [0, 1], y (...) (no gradient). References: torch.nn.functional.binary_cross_entropy.
    """

    def forward(self, p, y, reduction):
        self.p, self.y, self.reduction = p, y, reduction
        low = p.dtype.type(-100)
        with np.errstate(divide="ignore"):  # log(0) = -inf is clamped to -100 on the next line
            log_p, log_not_p = np.log(p), np.log1p(-p)  # (...), (...)
        loss = -(y * np.maximum(log_p, low) + (1 - y) * np.maximum(log_not_p, low))  # 1. (...)
        return _reduce(loss, reduction)  # 2. 0-d, or (...) for "none"

    def backward(self, dout):
        p, y = self.p, self.y  # (...), (...)
        # 2. reverses _reduce(loss, reduction): d(reduced) / d(loss) * dout.
        dloss = _unreduce(dout, self.reduction, p.shape)  # (...)
        # 1. reverses loss = -(y log p + (1 - y) log(1 - p)), the clamps left out (as PyTorch does):
        #    d/dp = -y/p + (1 - y)/(1 - p) = (p - y) / (p (1 - p)), p (1 - p) floored at 1e-12.
        return (dloss * (p - y) / np.maximum(p * (1 - p), p.dtype.type(1e-12)), None)  # (...)


class BinaryCrossEntropyWithLogits(Function):
    """L = max(x, 0) - x y + log1p(exp(-|x|)) = -(y log sigmoid(x) + (1 - y) log sigmoid(-x)).

    The max/log1p form never overflows and keeps every digit for large |x| (a sigmoid followed by
    binary cross-entropy saturates at p = 1 for x > 17 in float32).
    Derivative: dx = dout * (sigmoid(x) - y), computed as (1 - y) sigmoid(x) - y sigmoid(-x): the
    same value, but for y = 1 and large x it keeps -sigmoid(-x) = -e^-x instead of rounding 1 - 1 to 0.
    Inputs: x (...) logits, y (...) (no gradient). References: torch.nn.functional.binary_cross_entropy_with_logits.
    """

    def forward(self, x, y, reduction):
        self.x, self.y, self.reduction = x, y, reduction
        loss = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))  # 1. (...)
        return _reduce(loss, reduction)  # 2. 0-d, or (...) for "none"

    def backward(self, dout):
        # 2. reverses _reduce(loss, reduction): d(reduced) / d(loss) * dout.
        dloss = _unreduce(dout, self.reduction, self.x.shape)  # (...)
        x, y = self.x, self.y  # (...), (...)
        # 1. reverses loss = max(x, 0) - x y + log1p(exp(-|x|)): d/dx = sigmoid(x) - y,
        #    written (1 - y) sigmoid(x) - y sigmoid(-x) (see the docstring).
        return (dloss * ((1 - y) * _stable_sigmoid(x) - y * _stable_sigmoid(-x)), None)  # (...)


class MSELoss(Function):
    """L = (x - y)^2 per element, then reduced.   Derivative: dx = dout * 2 (x - y), dy = -dx.

    Both operands may require gradients (PyTorch allows it); the difference is saved.
    Inputs: x (...), y (...). References: torch.nn.functional.mse_loss; book ch. 4.4.
    """

    TORCH_NAME = "MseLossBackward0"

    def forward(self, x, y, reduction):
        self.difference, self.reduction = x - y, reduction  # 1. (...) difference = x - y; saved
        return _reduce(self.difference * self.difference, reduction)  # 2. 0-d, or (...) for "none"

    def backward(self, dout):
        # 2. reverses _reduce(difference * difference, reduction): d(d^2)/dd = 2 d, times d(reduced)/d(loss).
        dx = _unreduce(dout, self.reduction, self.difference.shape) * (2 * self.difference)  # (...)
        # 1. reverses difference = x - y: x gets the gradient as it is, y gets it negated (dy = -dx).
        return (dx if self.needs_input_grad[0] else None, -dx if self.needs_input_grad[1] else None)
