"""Fast dropout: the keep mask drawn four elements per 64-bit word, the mask kept as bools.

`dropout_keep_mask` is the one mask draw of the engine: the reference `Dropout` and both versions
of attention dropout draw the same mask from the same generator state (tests/test_kernels.py).
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
        shape: the mask's shape. p: drop probability in [0, 1].

    Returns:
        (keep, p_drawn): bool array of `shape`, and the effective drop probability.
    """
    size = int(np.prod(shape))
    threshold = int(round(p * 65536))
    words = rng.bit_generator.random_raw((size + 3) // 4)  # uint64, four 16-bit draws each
    draws = words.view(np.uint16)[:size].reshape(shape)
    return draws >= threshold, threshold / 65536


class Dropout(Function):
    """out = x * keep / (1 - p), keep_i ~ Bernoulli(1 - p)  (inverted dropout).

    Backward: dx = dout * keep / (1 - p). Scaling at training time keeps the expected value of
    each activation unchanged, so evaluation needs no rescaling (Srivastava et al. 2014, sec. 10).
    The mask is saved as bools (1 byte per element), not as a float multiplier.
    """

    def forward(self, x, p, rng):
        self.keep, p_drawn = dropout_keep_mask(rng, x.shape, p)
        self.scale = x.dtype.type(0.0 if p_drawn == 1 else 1.0 / (1.0 - p_drawn))
        out = x * self.scale
        out *= self.keep
        return out

    def backward(self, dout):
        dx = dout * self.scale
        dx *= self.keep
        return dx
