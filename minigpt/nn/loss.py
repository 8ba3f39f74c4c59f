"""Loss modules: torch.nn's loss classes as thin wrappers over the engine's loss functions.

The book mostly calls the functions (`torch.nn.functional.cross_entropy` in chapter 5,
`F.binary_cross_entropy` in appendix A), but chapter 4's `print_gradients` builds a module,
`loss = nn.MSELoss(); loss(output, target)`. Each class stores its options and calls the one
function of `autograd.functional` in `forward`, so its gradient is that function's backward rule.

References: torch.nn.MSELoss, CrossEntropyLoss, BCELoss, BCEWithLogitsLoss; Raschka ch. 4.4
(listing 4.5's print_gradients), appendix A.3-A.4.
"""

from __future__ import annotations

from autograd import Tensor
from autograd import functional as F
from minigpt.nn.module import Module

__all__ = ["MSELoss", "CrossEntropyLoss", "BCELoss", "BCEWithLogitsLoss"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction, loss: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{loss}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


class MSELoss(Module):
    """Mean squared error, mean((input - target)^2) (torch.nn.MSELoss).

    Args:
        reduction: "mean" (default), "sum" or "none" (the element-wise squares).

    Shapes: input and target of the same shape -> a 0-d tensor ("none": input's shape).

    Raises: ValueError for an unknown reduction; `autograd.functional.mse_loss`'s errors in forward.
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = _check_reduction(reduction, "MSELoss")

    def forward(self, input: Tensor, target) -> Tensor:  # noqa: A002 - torch's argument name
        return F.mse_loss(input, target, reduction=self.reduction)


class CrossEntropyLoss(Module):
    """Cross-entropy between logits and integer class targets (torch.nn.CrossEntropyLoss).

    Args:
        ignore_index: targets equal to it add nothing to the loss nor to the count (-100, as
            PyTorch; chapter 7 pads its targets with it).
        reduction: "mean" (over the targets not ignored), "sum" or "none".

    Shapes: logits (N, V) or (B, T, V), targets (N,) or (B, T) -> a 0-d tensor.

    Raises: ValueError for an unknown reduction; `autograd.functional.cross_entropy`'s errors.
    """

    def __init__(self, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__()
        self.ignore_index = ignore_index
        self.reduction = _check_reduction(reduction, "CrossEntropyLoss")

    def forward(self, input: Tensor, target) -> Tensor:  # noqa: A002
        return F.cross_entropy(input, target, ignore_index=self.ignore_index, reduction=self.reduction)


class BCELoss(Module):
    """Binary cross-entropy between probabilities and targets in [0, 1] (torch.nn.BCELoss).

    Args: reduction: "mean" (default), "sum" or "none".
    Shapes: input and target of the same shape -> a 0-d tensor ("none": input's shape).
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = _check_reduction(reduction, "BCELoss")

    def forward(self, input: Tensor, target) -> Tensor:  # noqa: A002
        return F.binary_cross_entropy(input, target, reduction=self.reduction)


class BCEWithLogitsLoss(Module):
    """Binary cross-entropy of sigmoid(input), computed stably from logits (torch.nn.BCEWithLogitsLoss).

    Args: reduction: "mean" (default), "sum" or "none".
    Shapes: input and target of the same shape -> a 0-d tensor ("none": input's shape).
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = _check_reduction(reduction, "BCEWithLogitsLoss")

    def forward(self, input: Tensor, target) -> Tensor:  # noqa: A002
        return F.binary_cross_entropy_with_logits(input, target, reduction=self.reduction)
