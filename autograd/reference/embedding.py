"""Embedding, a table lookup by token id (book ch. 2.7-2.8), forward and backward in plain NumPy.

Shape letters: V vocabulary (rows of the table), C channels (emb_dim); ids of any shape (...),
usually (B, T).
"""

from __future__ import annotations

import numpy as np

from autograd.function import Function

__all__ = ["Embedding"]


class Embedding(Function):
    """out[...] = weight[ids[...]]: each id picks one row of the (V, C) table.

    Derivative: the lookup copies rows, so each row of dout flows back to the row it came from;
    an id that appears several times gets the *sum* of its rows of dout:
        dweight[v] = sum of dout[i] over the positions i with ids[i] == v  (0 for unused ids)

    Args (of `forward`):
        weight: float array (V, C), the table (the book's `tok_emb.weight` / `pos_emb.weight`).
        ids: integer array (...), every id in [0, V) (checked by `autograd.functional.embedding`);
            a constant option, not an input with a gradient.

    Returns:
        out: array (..., C), weight's dtype. `backward(dout)` returns dweight (V, C).

    Raises: nothing of its own: `autograd.functional.embedding` checks that the ids are integers
    in [0, V).

    References: Raschka, "Build a Large Language Model (From Scratch)", ch. 2.7 (token
    embeddings) and 2.8 (positional embeddings); torch.nn.functional.embedding.
    """

    def forward(self, weight, ids):
        out = weight[ids]  # 1. (V, C)[(...)] -> (..., C)
        # Saved: the ids and the table's shape (not the table: the gradient does not read it).
        self.ids, self.weight_shape = ids, weight.shape
        return out

    def backward(self, dout):
        # 1. reverses out = weight[ids]: scatter the rows of dout back, adding repeated ids.
        # NOTE: `dweight[ids] += dout` would be wrong: with a repeated id only one row would land.
        # np.add.at adds every row (unbuffered).
        dweight = np.zeros(self.weight_shape, dtype=dout.dtype)  # (V, C)
        np.add.at(dweight, self.ids, dout)  # dweight[ids[i]] += dout[i] for every i; (..., C) rows
        return dweight
