"""Fast scaled dot-product attention: causal query blocks, in-place softmax, heads over threads.

What is different from `autograd/reference/attention.py` (same results to rounding, see
tests/test_kernels.py): causal attention is computed in blocks of `_QUERY_BLOCK` queries that
skip the keys every row of the block has masked (measurement at `_QUERY_BLOCK`); the scores
become the weights in place; the element-wise passes are shared among the threads by heads
(`parallel_for`; measured on the book's 124M model, batch 2 x 256, 2 cores: 189 -> 166 ms per
forward + backward); the dropout mask is drawn whole, once, so that it does not depend on the
blocks (and equals the reference's).
"""

from __future__ import annotations

import math

import numpy as np

from autograd.reference.dropout import dropout_keep_mask
from autograd.reference.dropout import dropout_scale as scale_of_kept
from autograd.function import Function
from autograd.parallel import GRAIN_SIZE, parallel_for

__all__ = ["ScaledDotProductAttention"]


# Queries per block of causal attention (see ScaledDotProductAttention). Smaller blocks skip more
# of the masked products but make more, smaller matrix products. Measured, forward + backward of
# 12 heads of 64 on 2 cores: T = 256 (batch 2): one block 12.3 ms, blocks of 256 / 128 / 64 rows
# 12.3 / 10.9 / 12.4 ms; T = 1024: 95.1 ms, then 60.7 / 59.8 / 68.3 ms.
_QUERY_BLOCK = 128


class ScaledDotProductAttention(Function):
    """out = dropout(softmax(mask(q k^T / sqrt(D)))) v  per batch and head.

    Forward (B, H, T, D inputs):
        scores = (q * scale) @ k^T           (B, H, T, T), scale = 1/sqrt(D) (Vaswani et al. eq. 1)
        scores[future] = -inf                causal: token t sees tokens <= t (book ch. 3.5)
        weights = softmax(scores, -1);  kept = dropout(weights)
        out = kept @ v                        (B, H, T, D)
    Backward, reversing each line:
        dv = kept^T @ dout;  dkept = dout @ v^T
        dweights = dkept * dropout_mask
        dscores = weights * (dweights - sum(dweights * weights, -1))   (softmax rule)
        dq = dscores @ k * scale;  dk = dscores^T @ (q * scale)
    Masked scores have weight 0 and so exactly 0 gradient.

    Causal attention skips what the mask hides: the queries are taken in blocks of _QUERY_BLOCK
    rows, and the block of rows [start, stop) meets only keys [0, stop), since every later key is
    masked for all of its rows (weight 0, gradient 0). Each block's lines above are the same; the
    key and value gradients add up over the blocks that see them. For T = 256 this does 3/4 of
    the products and element-wise work of the full T x T matrices, for T = 1024 about 9/16.
    """

    TORCH_NAME = "ScaledDotProductFlashAttentionForCpuBackward0"  # PyTorch 2.13 on a CPU

    def forward(self, q, k, v, causal, dropout_p, rng):
        dtype = q.dtype.type
        self.scale = dtype(1.0 / math.sqrt(q.shape[-1]))
        # Scaling q (T x D values) instead of the scores (T x T) is the same product, cheaper.
        q_scaled = q * self.scale
        num_queries, num_keys = q.shape[-2], k.shape[-2]
        keep, dropout_scale = None, dtype(1.0)
        if dropout_p > 0:
            # The whole (B, H, T, T) mask, drawn here in one thread: the same draws however the
            # work is split (masked entries get a draw too, as in dropout applied after softmax).
            keep, p_drawn = dropout_keep_mask(rng, q.shape[:-1] + (num_keys,), dropout_p)
            dropout_scale = scale_of_kept(p_drawn, dtype)
        mask = _causal_mask(num_queries, num_keys, q.dtype) if causal else None
        blocks = _query_blocks(num_queries, num_keys, causal)
        out = np.empty(q.shape[:-1] + v.shape[-1:], dtype=q.dtype)  # (B, H, T, D)
        saved = []
        for start, stop, keys in blocks:
            # (B, H, b, D) @ (B, H, D, keys) -> (B, H, b, keys): this block's queries, the keys it may see.
            weights = q_scaled[..., start:stop, :] @ np.swapaxes(k[..., :keys, :], -1, -2)
            block_keep = keep[..., start:stop, :keys] if keep is not None else None
            kept = np.empty_like(weights) if keep is not None else weights
            block_mask = mask[start:stop, :keys] if mask is not None else None
            _attention_weights(weights, block_mask, kept, block_keep, dropout_scale)
            out[..., start:stop, :] = kept @ v[..., :keys, :]  # (B, H, b, keys) @ (B, H, keys, D)
            saved.append((weights, kept, block_keep))
        self.q_scaled, self.k, self.v, self.blocks, self.saved = q_scaled, k, v, blocks, saved
        self.dropout_scale = dropout_scale
        return out

    def backward(self, dout):
        q_scaled, k, v = self.q_scaled, self.k, self.v
        num_keys = k.shape[-2]
        dq, dk, dv = np.empty_like(q_scaled), None, None
        # Last block first: it sees the most keys (all of them, unless there are more keys than
        # queries), so its key and value gradients start dk and dv; the other blocks add to them.
        for (start, stop, keys), (weights, kept, keep) in reversed(list(zip(self.blocks, self.saved))):
            dout_block = dout[..., start:stop, :]  # (B, H, b, D)
            dv_block = np.swapaxes(kept, -1, -2) @ dout_block  # (B, H, keys, b) @ (B, H, b, D)
            dscores = dout_block @ np.swapaxes(v[..., :keys, :], -1, -2)  # dkept: (B, H, b, keys)
            _attention_scores_gradient(dscores, weights, keep, self.dropout_scale)
            dq[..., start:stop, :] = dscores @ k[..., :keys, :]  # (B, H, b, keys) @ (B, H, keys, D)
            dk_block = np.swapaxes(dscores, -1, -2) @ q_scaled[..., start:stop, :]  # (B, H, keys, D)
            if dk is None and keys == num_keys:
                dk, dv = dk_block, dv_block
                continue
            if dk is None:  # keys after the last query are masked for every query: gradient 0
                dk, dv = np.zeros_like(k), np.zeros_like(v)
            dk[..., :keys, :] += dk_block
            dv[..., :keys, :] += dv_block
        dq *= self.scale  # scores = (scale q) k^T
        return dq, dk, dv


def _query_blocks(num_queries: int, num_keys: int, causal: bool) -> list[tuple[int, int, int]]:
    """(start, stop, keys) per block of query rows: rows [start, stop) meet keys [0, keys).

    One block with every key unless causal; causal blocks of _QUERY_BLOCK rows see the keys up to
    their last row (top-left aligned, as torch's is_causal: query i sees keys <= i). The last block
    always sees all the keys any block sees.
    """
    if not causal or num_queries <= _QUERY_BLOCK:
        return [(0, num_queries, num_keys)]
    return [(start, min(start + _QUERY_BLOCK, num_queries), min(start + _QUERY_BLOCK, num_queries, num_keys))
            for start in range(0, num_queries, _QUERY_BLOCK)]


def _attention_weights(scores: np.ndarray, mask, kept: np.ndarray, keep, dropout_scale) -> None:
    """In place: scores (..., b, keys) -> softmax(scores + mask); kept = weights * keep * scale.

    Every (batch, head) matrix is independent: the element-wise passes are shared among the
    threads by heads; the matrix products around them already use every core through BLAS.
    """
    heads_scores, heads_kept = _by_head(scores), _by_head(kept)
    heads_keep = _by_head(keep) if keep is not None else None

    def heads(start: int, stop: int) -> None:
        weights = heads_scores[start:stop]  # (h, b, keys): scores, in place -> weights
        if mask is not None:
            weights += mask  # future -> -inf
        _softmax_last_axis_in_place(weights)
        if heads_keep is not None:
            kept_part = heads_kept[start:stop]
            np.multiply(weights, dropout_scale, out=kept_part)
            kept_part *= heads_keep[start:stop]

    parallel_for(0, heads_scores.shape[0], _heads_grain(heads_scores), heads)


def _attention_scores_gradient(dkept: np.ndarray, weights: np.ndarray, keep, dropout_scale) -> None:
    """In place: dkept (..., b, keys) -> dscores, through the dropout and the softmax rule."""
    heads_dscores, heads_weights = _by_head(dkept), _by_head(weights)
    heads_keep = _by_head(keep) if keep is not None else None

    def heads(start: int, stop: int) -> None:
        dscores, weights_part = heads_dscores[start:stop], heads_weights[start:stop]  # (h, b, keys)
        if heads_keep is not None:
            dscores *= dropout_scale  # through the dropout: kept = weights * keep * scale
            dscores *= heads_keep[start:stop]
        # Softmax rule, in place: dscores = weights * (dweights - sum(dweights * weights, -1)).
        row_dot = np.einsum("hij,hij->hi", dscores, weights_part)[..., None]  # (h, b, 1)
        dscores -= row_dot
        dscores *= weights_part

    parallel_for(0, heads_dscores.shape[0], _heads_grain(heads_dscores), heads)


def _by_head(array: np.ndarray) -> np.ndarray:
    """(..., T_q, T_k) as (G, T_q, T_k), G the product of the batch dimensions.

    A view for the arrays written here (results of matrix products and fresh allocations, so
    C-contiguous: writing through it writes `array`); the dropout mask, only read, may be a
    block cut out of a larger array and may be copied.
    """
    return array.reshape((math.prod(array.shape[:-2]),) + array.shape[-2:])


def _heads_grain(heads: np.ndarray) -> int:
    """The fewest (T_q, T_k) matrices worth a thread of their own: GRAIN_SIZE elements."""
    return max(1, GRAIN_SIZE // max(heads.shape[-1] * heads.shape[-2], 1))


def _softmax_last_axis_in_place(scores: np.ndarray) -> None:
    """Overwrite `scores` with softmax(scores) along the last axis (see Softmax and _shifted_exp)."""
    row_max = np.max(scores, axis=-1, keepdims=True)
    row_max[~np.isfinite(row_max)] = 0  # a row with every key masked gives weights 0
    scores -= row_max
    np.exp(scores, out=scores)
    total = np.sum(scores, axis=-1, keepdims=True)
    total[total == 0] = 1
    scores *= np.reciprocal(total)


def _causal_mask(num_queries: int, num_keys: int, dtype) -> np.ndarray:
    """(T_q, T_k) additive mask: 0 where query i may see key j (j <= i), -inf above the diagonal.

    Adding -inf before the softmax gives those keys weight exactly 0 (book ch. 3.5.1).
    """
    return np.triu(np.full((num_queries, num_keys), -np.inf, dtype=dtype), k=1)
