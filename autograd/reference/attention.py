"""Scaled dot-product attention (book ch. 3.4-3.6), forward and backward in plain NumPy.

The whole (..., T, T) score matrix of every batch and head at once: no query blocks, no threads.
Shape letters: B batch, H heads, T tokens (T_q queries, T_k keys), D head size (C / H).
"""

from __future__ import annotations

import math

import numpy as np

from autograd.function import Function
from autograd.reference.dropout import dropout_keep_mask
from autograd.reference.dropout import dropout_scale as scale_of_kept

__all__ = ["ScaledDotProductAttention"]


class ScaledDotProductAttention(Function):
    """out = dropout(softmax(mask(q k^T / sqrt(D)))) v, per batch and head.

    Forward, with scale = 1 / sqrt(D) (Vaswani et al. 2017, eq. 1: keeps the scores' variance ~1):
        scores = q k^T * scale;  scores[future] = -inf (causal: query i sees keys j <= i)
        weights = softmax(scores) over the keys;  kept = weights * keep / (1 - p);  out = kept v
    Derivative, each line reversed:
        dkept = dout v^T,  dv = kept^T dout;  dweights = dkept * keep / (1 - p)
        dscores = weights * (dweights - sum(dweights * weights) over the keys)   (softmax rule)
        dq = dscores k * scale,  dk = dscores^T q * scale
    A masked score has weight exactly 0, so its dscores is exactly 0: nothing flows to the future.
    A row whose every key is masked (-inf) gets weights 0 (and output 0), not NaN.
    Here p is the drop probability the mask realises (`p_drawn` of `dropout_keep_mask`: dropout_p
    itself with an autograd.Generator, as PyTorch), so the expected output is the undropped one.

    Args (of `forward`):
        q: float array (..., T_q, D), usually (B, H, T, D). k, v: (..., T_k, D), q's dtype.
        causal: hide future keys (top-left aligned, as torch's is_causal).
        dropout_p: drop probability on the weights, in [0, 1]; 0 draws nothing.
        rng: the generator of the dropout mask (ignored when dropout_p is 0). The whole
            (..., T_q, T_k) mask is drawn at once with `dropout_keep_mask`, masked entries
            included, exactly as the fast kernel draws it: one generator, one mask.

    Returns:
        out: array (..., T_q, D), q's dtype. `backward(dout)` returns (dq, dk, dv) of the inputs'
        shapes, None for an input that needs no gradient.

    Raises: nothing of its own: `autograd.functional.scaled_dot_product_attention` checks the
    shapes, dtypes, dropout_p and rng.

    References: Vaswani et al. 2017, "Attention Is All You Need", eq. 1; Srivastava et al. 2014
    (dropout); Raschka, "Build a Large Language Model (From Scratch)", ch. 3.4 (scaled dot
    product), 3.5 (causal mask, 3.5.2 dropout on the weights), 3.6 (heads);
    torch.nn.functional.scaled_dot_product_attention (is_causal, dropout_p).
    """

    TORCH_NAME = "ScaledDotProductFlashAttentionForCpuBackward0"  # PyTorch 2.13 on a CPU

    def forward(self, q, k, v, causal, dropout_p, rng):
        dtype = q.dtype.type
        num_queries, num_keys = q.shape[-2], k.shape[-2]
        scale = dtype(1.0 / math.sqrt(q.shape[-1]))  # in q's dtype: no float64 for float32 inputs
        scores = (q @ np.swapaxes(k, -1, -2)) * scale  # 1. (..., T_q, D) @ (..., D, T_k) -> (..., T_q, T_k)
        if causal:
            future = np.triu(np.ones((num_queries, num_keys), dtype=bool), k=1)  # (T_q, T_k) j > i
            scores = np.where(future, -np.inf, scores)  # 2. (..., T_q, T_k); exp(-inf) = 0 below
        # 3. weights = softmax(scores) over the keys, shifted by the row max (softmax is shift
        # invariant; exp cannot overflow). An all -inf row shifts by 0 and sums to 0: weights 0.
        row_max = np.max(scores, axis=-1, keepdims=True)  # (..., T_q, 1)
        row_max = np.where(np.isfinite(row_max), row_max, 0)  # (..., T_q, 1)
        exp_scores = np.exp(scores - row_max)  # (..., T_q, T_k)
        total = np.sum(exp_scores, axis=-1, keepdims=True)  # (..., T_q, 1)
        weights = exp_scores / np.where(total == 0, 1, total)  # 3. (..., T_q, T_k)
        keep, dropout_scale = None, dtype(1.0)
        if dropout_p > 0:
            # The whole mask at once, masked entries included: the fast kernel's draws exactly.
            keep, p_drawn = dropout_keep_mask(rng, q.shape[:-1] + (num_keys,), dropout_p)  # (..., T_q, T_k)
            dropout_scale = scale_of_kept(p_drawn, dtype)
            kept = weights * keep * dropout_scale  # 4. (..., T_q, T_k)
        else:
            kept = weights  # 4. no dropout
        out = kept @ v  # 5. (..., T_q, T_k) @ (..., T_k, D) -> (..., T_q, D)
        # Saved: the inputs, the weights and the bool mask; backward recomputes kept (line 4).
        self.q, self.k, self.v, self.scale = q, k, v, scale
        self.weights, self.keep, self.dropout_scale = weights, keep, dropout_scale
        return out

    def backward(self, dout):
        q, k, v = self.q, self.k, self.v  # (..., T_q, D), (..., T_k, D), (..., T_k, D)
        weights, keep = self.weights, self.keep  # (..., T_q, T_k), bool (..., T_q, T_k) or None
        need_q, need_k, need_v = self.needs_input_grad
        dq = dk = dv = None
        # Forward line 4 again (not saved: it would be a second (..., T_q, T_k) array).
        kept = weights if keep is None else weights * keep * self.dropout_scale  # (..., T_q, T_k)
        # 5. reverses out = kept @ v
        if need_v:
            dv = np.swapaxes(kept, -1, -2) @ dout  # (..., T_k, T_q) @ (..., T_q, D) -> (..., T_k, D)
        if not (need_q or need_k):
            return dq, dk, dv
        dkept = dout @ np.swapaxes(v, -1, -2)  # (..., T_q, D) @ (..., D, T_k) -> (..., T_q, T_k)
        # 4. reverses kept = weights * keep * dropout_scale: the same mask and scale.
        dweights = dkept if keep is None else dkept * keep * self.dropout_scale  # (..., T_q, T_k)
        # 3. reverses weights = softmax(scores): dscores = weights * (dweights - <dweights, weights>).
        row_dot = np.sum(dweights * weights, axis=-1, keepdims=True)  # (..., T_q, 1)
        dscores = weights * (dweights - row_dot)  # (..., T_q, T_k)
        # 2. reverses scores[future] = -inf: those weights are 0, so dscores is already 0 there.
        # 1. reverses scores = q @ k^T * scale
        if need_q:
            dq = (dscores @ k) * self.scale  # (..., T_q, T_k) @ (..., T_k, D) -> (..., T_q, D)
        if need_k:
            dk = (np.swapaxes(dscores, -1, -2) @ q) * self.scale  # (..., T_k, T_q) @ (..., T_q, D) -> (..., T_k, D)
        return dq, dk, dv
