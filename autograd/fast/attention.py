"""Fast scaled dot-product attention: causal query blocks, in-place softmax, heads over threads.

What is different from `autograd/reference/attention.py` (same results to rounding, see
tests/test_kernels.py): causal attention is computed in blocks of `_QUERY_BLOCK` queries that
skip the keys every row of the block has masked (measurement at `_QUERY_BLOCK`); the scores
become the weights in place; the heads (every (batch, head) matrix) are shared among the
engine's threads, each doing the whole forward (or backward) of its heads, small matrix products
included, with OpenBLAS in one thread meanwhile (`parallel_for_one_blas_thread`). OpenBLAS would
otherwise split each (T x D) @ (D x T) product of one head over both cores and make its threads
meet once per product: measured, forward + backward of (2, 12, 256, 64) causal, 2 threads, 2
cores at load average 7-9: 630-770 ms before, 40-62 ms after. The dropout mask is drawn whole,
once, so that it does not depend on the blocks or the threads (and equals the reference's).
"""

from __future__ import annotations

import math

import numpy as np

from autograd.reference.dropout import dropout_keep_mask
from autograd.reference.dropout import dropout_scale as scale_of_kept
from autograd.function import Function
from autograd.parallel import GRAIN_SIZE, parallel_for_one_blas_thread

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
        heads_q, heads_k, heads_v, heads_out = _by_head(q_scaled), _by_head(k), _by_head(v), _by_head(out)
        num_heads = heads_q.shape[0]
        saved = []
        for start, stop, keys in blocks:  # (G, b, keys) per block: the scores, then the weights
            weights = np.empty((num_heads, stop - start, keys), dtype=q.dtype)
            block_keep = _by_head(keep[..., start:stop, :keys]) if keep is not None else None
            kept = np.empty_like(weights) if keep is not None else weights
            saved.append((weights, kept, block_keep))

        def heads(first: int, last: int) -> None:
            for (start, stop, keys), (weights, kept, block_keep) in zip(blocks, saved):
                # (h, b, D) @ (h, D, keys) -> (h, b, keys): this block's queries, the keys it may see.
                head_weights = weights[first:last]
                np.matmul(heads_q[first:last, start:stop], np.swapaxes(heads_k[first:last, :keys], -1, -2), out=head_weights)
                head_kept = kept[first:last]
                _weights_in_place(head_weights, mask[start:stop, :keys] if mask is not None else None, head_kept,
                                  block_keep[first:last] if block_keep is not None else None, dropout_scale)
                heads_out[first:last, start:stop] = head_kept @ heads_v[first:last, :keys]  # (h, b, keys) @ (h, keys, D)

        parallel_for_one_blas_thread(0, num_heads, _heads_grain(num_queries, num_keys), heads)
        self.q_scaled, self.k, self.v, self.blocks, self.saved = heads_q, heads_k, heads_v, blocks, saved
        self.dropout_scale, self.shapes = dropout_scale, (q.shape, k.shape, v.shape)
        return out

    def backward(self, dout):
        heads_q, heads_k, heads_v = self.q_scaled, self.k, self.v
        heads_dout = _by_head(np.ascontiguousarray(dout))
        num_keys = heads_k.shape[-2]
        dq, dk, dv = np.empty_like(heads_q), np.empty_like(heads_k), np.empty_like(heads_v)
        blocks = list(zip(self.blocks, self.saved))

        def heads(first: int, last: int) -> None:
            # Last block first: it sees the most keys (all of them, unless there are more keys
            # than queries), so its key and value gradients start dk and dv; the others add to them.
            started = False
            for (start, stop, keys), (weights, kept, keep) in reversed(blocks):
                dout_block = heads_dout[first:last, start:stop]  # (h, b, D)
                dv_block = np.swapaxes(kept[first:last], -1, -2) @ dout_block  # (h, keys, b) @ (h, b, D)
                dscores = dout_block @ np.swapaxes(heads_v[first:last, :keys], -1, -2)  # dkept: (h, b, keys)
                _scores_gradient_in_place(dscores, weights[first:last], keep[first:last] if keep is not None else None,
                                          self.dropout_scale)
                dq[first:last, start:stop] = dscores @ heads_k[first:last, :keys]  # (h, b, keys) @ (h, keys, D)
                dk_block = np.swapaxes(dscores, -1, -2) @ heads_q[first:last, start:stop]  # (h, keys, D)
                if not started:
                    if keys < num_keys:  # keys after the last query are masked for every query: gradient 0
                        dk[first:last, keys:] = 0
                        dv[first:last, keys:] = 0
                    dk[first:last, :keys], dv[first:last, :keys] = dk_block, dv_block
                    started = True
                    continue
                dk[first:last, :keys] += dk_block
                dv[first:last, :keys] += dv_block

        parallel_for_one_blas_thread(0, dq.shape[0], _heads_grain(dq.shape[-2], num_keys), heads)
        dq *= self.scale  # scores = (scale q) k^T
        q_shape, k_shape, v_shape = self.shapes
        return dq.reshape(q_shape), dk.reshape(k_shape), dv.reshape(v_shape)


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


def _weights_in_place(weights: np.ndarray, mask, kept: np.ndarray, keep, dropout_scale) -> None:
    """In place: scores (h, b, keys) -> softmax(scores + mask); kept = weights * keep * scale (if keep)."""
    if mask is not None:
        weights += mask  # future -> -inf
    _softmax_last_axis_in_place(weights)
    if keep is not None:
        np.multiply(weights, dropout_scale, out=kept)
        kept *= keep


def _scores_gradient_in_place(dscores: np.ndarray, weights: np.ndarray, keep, dropout_scale) -> None:
    """In place: dkept (h, b, keys) -> dscores, through the dropout and the softmax rule."""
    if keep is not None:
        dscores *= dropout_scale  # through the dropout: kept = weights * keep * scale
        dscores *= keep
    # Softmax rule, in place: dscores = weights * (dweights - sum(dweights * weights, -1)).
    row_dot = np.einsum("hij,hij->hi", dscores, weights)[..., None]  # (h, b, 1)
    dscores -= row_dot
    dscores *= weights


def _by_head(array: np.ndarray) -> np.ndarray:
    """(..., T_q, T_k) as (G, T_q, T_k), G the product of the batch dimensions.

    A view for the arrays written here (results of matrix products and fresh allocations, so
    C-contiguous: writing through it writes `array`); the dropout mask, only read, may be a
    block cut out of a larger array and may be copied.
    """
    return array.reshape((math.prod(array.shape[:-2]),) + array.shape[-2:])


def _heads_grain(num_queries: int, num_keys: int) -> int:
    """The fewest heads worth a thread of their own: (T_q, T_k) score matrices of GRAIN_SIZE elements."""
    return max(1, GRAIN_SIZE // max(num_queries * num_keys, 1))


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
