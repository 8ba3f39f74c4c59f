"""Rotary position embeddings (RoPE) applied to queries or keys, forward and backward in plain NumPy.

Shape letters: B batch, H heads, T tokens, D head size (even); x is (..., T, D), usually (B, H, T, D).
"""

from __future__ import annotations

import numpy as np

from autograd.function import Function

__all__ = ["Rope"]


class Rope(Function):
    """out = x * cos + rotate_half(x) * sin, rotate_half(x) = concat(-x2, x1), x1, x2 the halves of D.

    The split-halves layout of Hugging Face and the book (`apply_rope`): channel i of the first
    half and channel i + D/2 form a pair rotated by the angle at column i of cos/sin,
        out1 = x1 * cos1 - x2 * sin1,   out2 = x2 * cos2 + x1 * sin2
    (cos1, cos2 the halves of cos; equal when cos comes from `compute_rope_params`).

    Derivative (a rotation: its transpose rotates back):
        dx = dout * cos + rotate_half^T(dout * sin),  rotate_half^T(g) = concat(g2, -g1)

    Args (of `forward`):
        x: float array (..., T, D), D even.
        cos, sin: float arrays of x's dtype broadcastable to x, usually (T, D) (the rows of the
            tokens' positions); constants: no gradient flows to them.

    Returns:
        out: array of x's shape and dtype. `backward(dout)` returns dx.

    Raises: nothing of its own: `autograd.functional.apply_rope` checks the shapes and dtypes.

    References: Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position Embedding",
    eq. 34; Hugging Face transformers `rotate_half` / `apply_rotary_pos_emb`; Raschka,
    LLMs-from-scratch ch05/07_gpt_to_llama (`apply_rope`).
    """

    def forward(self, x, cos, sin):
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]  # (..., T, D/2) each
        rotated = np.concatenate((-x2, x1), axis=-1)  # 1. (..., T, D) rotate_half(x)
        out = x * cos + rotated * sin  # 2. (..., T, D)
        self.cos, self.sin = cos, sin  # saved: the rotation, not x (the op is linear in x)
        return out

    def backward(self, dout):
        half = dout.shape[-1] // 2
        # 2. reverses out = x * cos + rotated * sin: cos and sin are constants.
        dx = dout * self.cos  # (..., T, D)
        drotated = dout * self.sin  # (..., T, D)
        # 1. reverses rotated = concat(-x2, x1): x1 got drotated's second half, x2 minus its first.
        dx[..., :half] += drotated[..., half:]
        dx[..., half:] -= drotated[..., :half]
        return dx
