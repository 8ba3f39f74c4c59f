"""Dropout (book ch. 3.5.2), forward and backward in plain NumPy, and the keep-mask draw it shares.

`dropout_keep_mask` is the one place where dropout draws random numbers: the fast kernels and
the attention weights' dropout call it too, so that one generator gives one mask in every mode.
Shape letters: any shape `(...)`; the op is element-wise.
"""

from __future__ import annotations

import numpy as np

from autograd.function import Function

__all__ = ["Dropout", "dropout_keep_mask"]


def dropout_keep_mask(rng: np.random.Generator, shape: tuple, p: float) -> tuple[np.ndarray, float]:
    """Draw which elements dropout keeps: a bool array, True with probability 1 - p.

    Each element compares 16 random bits with round(p * 65536), so the drop probability is p
    rounded to a multiple of 1/65536 (at most 7.7e-6 away); the second return value is that
    probability, p_drawn, and the caller scales by 1 / (1 - p_drawn) so that the expected output
    equals the input exactly. Raw 64-bit words from the generator give four draws each: about
    3x faster than `rng.random(shape, dtype=np.float32) >= p`, which matters for the
    (B, H, T, T) attention weights.

    Args:
        rng: the generator to draw from (its state advances by ceil(size / 4) words).
        shape: the mask's shape (tuple of ints). p: drop probability in [0, 1] (checked by the
            callers, `autograd.functional.dropout` and `scaled_dot_product_attention`).

    Returns:
        (keep, p_drawn): bool array of `shape`, and the effective drop probability (a float).

    Raises: nothing of its own: the callers check p and that rng is a np.random.Generator.

    Example:
        >>> keep, p_drawn = dropout_keep_mask(np.random.default_rng(0), (2, 3), 0.5)
        >>> keep.shape, keep.dtype, p_drawn
        ((2, 3), dtype('bool'), 0.5)
    """
    size = int(np.prod(shape))
    threshold = int(round(p * 65536))
    words = rng.bit_generator.random_raw((size + 3) // 4)  # (ceil(size / 4),) uint64
    draws = words.view(np.uint16)[:size].reshape(shape)  # (...) uint16, four draws per word
    return draws >= threshold, threshold / 65536


class Dropout(Function):
    """Inverted dropout: out = x * keep / (1 - p), keep ~ Bernoulli(1 - p) per element.

    Derivative: dx = dout * keep / (1 - p) (the same mask and scale: the op is linear in x).
    Scaling by 1 / (1 - p) at training time keeps each activation's expected value, so evaluation
    needs no rescaling. p = 1 drops everything (scale 0, not 1/0).

    Args (of `forward`):
        x: float array (...). p: drop probability in [0, 1]. rng: np.random.Generator for the
            mask (drawn with `dropout_keep_mask`, so the fast kernel draws the same mask).

    Returns:
        out: array (...), x's dtype. `backward(dout)` returns dx (...), x's dtype.

    Raises: nothing of its own: `autograd.functional.dropout` checks p and rng.

    References: Srivastava et al. 2014, "Dropout: A Simple Way to Prevent Neural Networks from
    Overfitting", JMLR 15, section 10 (scaling at training time); Raschka, "Build a Large Language
    Model (From Scratch)", ch. 3.5.2; torch.nn.functional.dropout.
    """

    TORCH_NAME = "MulBackward0"  # PyTorch (CPU) multiplies by the scaled mask

    def forward(self, x, p, rng):
        keep, p_drawn = dropout_keep_mask(rng, x.shape, p)  # 1. (...) bool: True = kept
        scale = x.dtype.type(0.0 if p_drawn == 1 else 1.0 / (1.0 - p_drawn))  # in x's dtype
        out = x * keep * scale  # 2. (...)
        # Saved: the mask as bools (1 byte per element) and the scale; backward reuses both.
        self.keep, self.scale = keep, scale
        return out

    def backward(self, dout):
        # 2. reverses out = x * keep * scale: the same mask and scale (1. draws, nothing to reverse).
        dx = dout * self.keep * self.scale  # (...)
        return dx
