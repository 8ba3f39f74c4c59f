"""Fast embedding: the backward scatter by sorting ids and `np.add.reduceat`.

What is different from `autograd/reference/embedding.py` (same results to rounding, see
tests/test_kernels.py): repeated ids are summed with one sort and `np.add.reduceat` instead of
`np.add.at` (correct but slow), and only the rows that were looked up are written.
"""

from __future__ import annotations

import numpy as np

from autograd.function import Function

__all__ = ["Embedding"]


class Embedding(Function):
    """out[b, t] = weight[ids[b, t]]   (a row lookup; book ch. 2.7).

    Backward: dweight[v] = sum of dout[b, t] over all positions with ids[b, t] == v. Repeated ids
    must add up; instead of `np.add.at` (correct but slow) the rows of dout are sorted by id and
    each run of equal ids is summed with one `np.add.reduceat`; only the rows that were looked up
    are written. Inputs: weight (the ids are a constant option).
    """

    def forward(self, weight, ids):
        self.ids, self.weight_shape = ids, weight.shape
        return weight[ids]

    def backward(self, dout):
        vocab_size, channels = self.weight_shape
        flat_ids = self.ids.reshape(-1)
        rows = dout.reshape(-1, channels)
        order = np.argsort(flat_ids, kind="stable")
        sorted_ids = flat_ids[order]
        starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
        dweight = np.zeros(self.weight_shape, dtype=dout.dtype)
        if len(flat_ids):
            dweight[sorted_ids[starts]] = np.add.reduceat(rows[order], starts, axis=0)
        return dweight
