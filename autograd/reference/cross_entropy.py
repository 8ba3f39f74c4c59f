"""Cross-entropy of logits against integer class targets, forward and backward (book ch. 5.1.2).

The reference kernel: the gradient is computed in `backward`, in plain NumPy, from the logits and
the row max and sum of exponentials that forward saved. `autograd/fast/cross_entropy.py` computes
the same values in cache-sized blocks of rows, with threads, writing the gradient during forward;
tests/test_kernels.py checks that the two agree.

Shapes: N rows (B*T flattened: `autograd.functional.cross_entropy` flattens (B, T, V) first),
V classes (the vocabulary).

References: torch.nn.functional.cross_entropy (ignore_index, reduction); Goodfellow, Bengio &
Courville, "Deep Learning", section 6.2.2.3 (softmax units and the log-likelihood).
"""

from __future__ import annotations

import numpy as np

from autograd.function import Function

__all__ = ["CrossEntropy"]


class CrossEntropy(Function):
    """loss_i = logsumexp(logits_i) - logits_i[target_i]: the negative log-probability of the target.

    Reduced over the counted rows (target != ignore_index): "mean" divides by their number, "sum"
    adds, "none" keeps one loss per row (0 at ignored rows).

    Derivative: d loss_i / d logits_i = softmax(logits_i) - onehot(target_i), so
        dlogits_i = (softmax(logits_i) - onehot(target_i)) * dout * w_i
    with w_i = 1 / count for "mean", 1 for "sum" and "none", and 0 for an ignored row. Ignored
    rows touch neither the loss nor any gradient, whatever they hold (-inf or NaN included).

    Inputs: logits (N, V) float, targets (N,) int64 (a constant). Options: ignore_index, reduction.
    Returns: a 0-d array ("mean", "sum") or (N,) ("none"), dtype of the logits.
    References: torch.nn.functional.cross_entropy; book ch. 5.1.2.
    """

    TORCH_NAME = "NllLossBackward0"  # PyTorch: log_softmax, then nll_loss, which prints

    def forward(self, logits, targets, ignore_index, reduction):
        rows = np.arange(logits.shape[0])  # (N,)
        counted = targets != ignore_index  # (N,) bool
        safe_targets = np.where(counted, targets, 0)  # (N,): any valid index for ignored rows
        # An ignored row may hold inf or NaN (a banned token): its arithmetic is discarded below.
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            # 1. log_sum_exp = log(sum(exp(logits))) per row, shifted by the row max (logsumexp is
            # shift invariant: max + log(sum(exp(logits - max))); exp cannot overflow).
            row_max = np.max(logits, axis=1, keepdims=True)  # (N, 1)
            row_max = np.where(np.isfinite(row_max), row_max, 0)  # (N, 1) a row of only -inf: exp gives 0
            total = np.sum(np.exp(logits - row_max), axis=1, keepdims=True)  # (N, 1)
            log_sum_exp = row_max + np.log(total)  # 1. (N, 1)
            losses = log_sum_exp[:, 0] - logits[rows, safe_targets]  # 2. (N,)
        losses = np.where(counted, losses, 0).astype(logits.dtype, copy=False)  # 3. (N,)
        count = int(counted.sum())
        if reduction == "mean":  # the mean of no rows is NaN, as in PyTorch
            result = np.divide(losses.sum(), count) if count else np.array(np.nan, dtype=logits.dtype)  # 4. 0-d
        elif reduction == "sum":
            result = losses.sum()  # 4. 0-d
        else:
            result = losses  # 4. (N,)
        # Saved: backward recomputes softmax(logits) = exp(logits - row_max) / total from them.
        self.logits, self.row_max, self.total, self.safe_targets = logits, row_max, total, safe_targets
        self.counted, self.count, self.reduction = counted, count, reduction
        return np.asarray(result, dtype=logits.dtype)

    def backward(self, dout):
        logits, counted = self.logits, self.counted  # (N, V), (N,)
        dtype = logits.dtype.type
        # 4. reverses result = the mean, the sum or losses itself: d result / d losses_i, per row.
        if self.reduction == "mean":
            dlosses = np.full(counted.shape, dout / dtype(max(self.count, 1)), dtype=logits.dtype)  # (N,)
        else:  # "sum": dout for every row; "none": dout is already one value per row
            dlosses = np.broadcast_to(dout, counted.shape).astype(logits.dtype)  # (N,)
        # 3. reverses losses = where(counted, losses, 0): an ignored row gets 0.
        dlosses = np.where(counted, dlosses, 0)  # (N,)
        # 2. reverses losses = log_sum_exp[:, 0] - logits[rows, safe_targets]: log_sum_exp gets dlosses
        #    (on through 1. below), the target's logit gets -dlosses (the last line).
        # 1. reverses log_sum_exp = log(sum(exp(logits))): its derivative is softmax(logits), recomputed
        #    from the saved row_max and total.
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            probs = np.exp(logits - self.row_max) / self.total  # (N, V) softmax(logits)
        dlogits = probs * dlosses[:, None]  # (N, V)
        dlogits[~counted] = 0  # (N, V) 0 even where an ignored row's logits are inf or NaN
        dlogits[np.arange(len(counted)), self.safe_targets] -= dlosses  # 2., the target's term: - onehot
        return dlogits.astype(logits.dtype, copy=False), None
