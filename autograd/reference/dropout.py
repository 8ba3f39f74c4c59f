"""Dropout (book ch. 3.5.2), forward and backward in plain NumPy, and the keep-mask draw it shares.

`dropout_keep_mask` is the one place where dropout draws random numbers: the fast kernels and
the attention weights' dropout call it too, so that one generator gives one mask in every mode.
With an `autograd.Generator` (the default) the mask is PyTorch's: its CPU dropout computes
`input * empty_like(input).bernoulli_(1 - p).div_(1 - p)`, one float64 uniform per element.
Shape letters: any shape `(...)`; the op is element-wise.
"""

from __future__ import annotations

import numpy as np

from autograd.function import Function
from autograd.random import bernoulli_keep

__all__ = ["Dropout", "dropout_keep_mask", "dropout_scale"]


def dropout_keep_mask(rng, shape: tuple, p: float) -> tuple[np.ndarray, float]:
    """Draw which elements dropout keeps: a bool array, True with probability 1 - p.

    With an `autograd.Generator`: PyTorch's mask bit for bit, `bernoulli_(1 - p)` (a float64
    uniform from two 32-bit words per element, compared with 1 - p; vectorised in
    `autograd.random.bernoulli_keep`), and p_drawn = p. p = 1 draws nothing (PyTorch multiplies
    by zero). With a `np.random.Generator` (NumPy's streams, as minigpt drew before): each
    element compares 16 random bits with round(p * 65536), so p_drawn is p rounded to a multiple
    of 1/65536; four draws per raw 64-bit word.

    Args:
        rng: an `autograd.Generator` or `np.random.Generator` (its state advances).
        shape: the mask's shape (tuple of ints). p: drop probability in [0, 1] (checked by the
            callers, `autograd.functional.dropout` and `scaled_dot_product_attention`).

    Returns:
        (keep, p_drawn): bool array of `shape`, and the drop probability drawn (a float); scale
        the kept values by `dropout_scale(p_drawn, dtype)`.

    Raises: nothing of its own: the callers check p and the generator's type.

    Example:
        >>> keep, p_drawn = dropout_keep_mask(np.random.default_rng(0), (2, 3), 0.5)
        >>> keep.shape, keep.dtype, p_drawn
        ((2, 3), dtype('bool'), 0.5)
    """
    if p == 1:
        return np.zeros(shape, dtype=bool), 1.0
    if not isinstance(rng, np.random.Generator):
        return bernoulli_keep(rng, shape, 1.0 - p), p
    size = int(np.prod(shape))
    threshold = int(round(p * 65536))
    words = rng.bit_generator.random_raw((size + 3) // 4)  # (ceil(size / 4),) uint64
    draws = words.view(np.uint16)[:size].reshape(shape)  # (...) uint16, four draws per word
    return draws >= threshold, threshold / 65536


def dropout_scale(p_drawn: float, dtype) -> np.generic:
    """The kept elements' factor 1 / (1 - p) in `dtype`, as PyTorch's `div_(1 - p)` rounds it:
    1 divided by (1 - p) rounded to `dtype` first. 0 when p = 1 (everything dropped)."""
    dtype = np.dtype(dtype).type
    return dtype(0.0) if p_drawn == 1 else dtype(1.0) / dtype(1.0 - p_drawn)


class Dropout(Function):
    """Inverted dropout: out = x * keep / (1 - p), keep ~ Bernoulli(1 - p) per element.

    Derivative: dx = dout * keep / (1 - p) (the same mask and scale: the op is linear in x).
    Scaling by 1 / (1 - p) at training time keeps each activation's expected value, so evaluation
    needs no rescaling. p = 1 drops everything (scale 0, not 1/0).

    Args (of `forward`):
        x: float array (...). p: drop probability in [0, 1]. rng: the generator of the
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
        scale = dropout_scale(p_drawn, x.dtype)  # in x's dtype
        out = x * keep * scale  # 2. (...)
        # Saved: the mask as bools (1 byte per element) and the scale; backward reuses both.
        self.keep, self.scale = keep, scale
        return out

    def backward(self, dout):
        # 2. reverses out = x * keep * scale: the same mask and scale (1. draws, nothing to reverse).
        dx = dout * self.keep * self.scale  # (...)
        return dx
