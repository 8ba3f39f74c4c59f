"""Rotary position embeddings (RoPE): `compute_rope_params` and `apply_rope`, with Llama 3's frequency scaling.

GPT-2 adds a learned vector per position to the token embedding. Llama and Qwen instead rotate
every query and key inside attention: the channel pairs (i, i + D/2) of a head of size D are
rotated by the angle p * inv_freq[i] for the token at position p, inv_freq[i] = theta_base^(-2i/D).
The dot product of a rotated query at position p and a rotated key at position p' then depends on
p - p' only: attention sees relative positions, and nothing is learned.

`compute_rope_params` makes the cos and sin tables once per model, (context_length, head_dim);
`apply_rope(x, cos, sin, offset=0)` rotates (B, H, T, D) queries or keys: one fused op with its own
backward (`autograd/reference/rope.py`), the tokens taken at positions offset ... offset + T - 1
(the KV cache's start position) or at given positions.

Llama 3.1/3.2 stretch the low frequencies for long contexts ("rope_freq" in the book's config):
with wavelength 2 pi / inv_freq, frequencies whose wavelength exceeds
original_context_length / low_freq_factor are divided by `factor`, those shorter than
original_context_length / high_freq_factor are kept, and the band in between is interpolated
smoothly: smooth = (original_context_length / wavelength - low_freq_factor) /
(high_freq_factor - low_freq_factor), inv_freq' = (1 - smooth) inv_freq / factor + smooth inv_freq.

Shape letters: B batch, H heads, T tokens, D head_dim, L context_length.

References: Su et al. 2021, "RoFormer: Enhanced Transformer with Rotary Position Embedding",
section 3.4; Meta's Llama 3.1 `apply_scaling` (the frequency scaling), as in Hugging Face's
`_compute_llama3_parameters`; Raschka, LLMs-from-scratch pkg/llms_from_scratch/llama3.py
(`compute_rope_params`, `apply_rope`).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from autograd import Tensor
from autograd.functional import apply_rope

__all__ = ["compute_rope_params", "apply_rope"]

_FREQ_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_context_length")


def compute_rope_params(head_dim: int, theta_base: float = 10_000, context_length: int = 4096, freq_config=None,
                        dtype=np.float32) -> tuple[Tensor, Tensor]:
    """The cos and sin tables of rotary position embeddings, one row per position.

    Args:
        head_dim: D, the size of each attention head (even).
        theta_base: the base of the inverse frequencies theta_base^(-2i/D) (10,000 in RoFormer,
            500,000 in Llama 3, 1,000,000 in Qwen3: the book's "rope_base").
        context_length: L, the number of positions tabulated.
        freq_config: None, or Llama 3's frequency scaling, a dict with "factor",
            "low_freq_factor", "high_freq_factor" and "original_context_length" (the book's
            "rope_freq"; see the module docstring).
        dtype: the dtype the angles are computed in and the tables returned in: float32 (the
            book's and Hugging Face's, also for float64 models), or float64.

    Returns:
        (cos, sin): Tensors (L, D) without gradient; columns i and i + D/2 hold the same angle.

    Raises:
        ValueError: head_dim odd or not positive; context_length not positive; theta_base not > 0;
            freq_config missing a key or with high_freq_factor <= low_freq_factor.

    References: Su et al. 2021, eq. 15 (theta_i = 10000^(-2(i-1)/d)); Meta's Llama 3.1
    `apply_scaling`; the book's pkg/llms_from_scratch/llama3.py `compute_rope_params`.
    """
    for name, value in (("head_dim", head_dim), ("context_length", context_length)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"compute_rope_params: {name} must be a positive integer, got {value!r}")
    if head_dim % 2:
        raise ValueError(f"compute_rope_params: head_dim must be even (channels rotate in pairs), got {head_dim}")
    if not isinstance(theta_base, numbers.Real) or not theta_base > 0:
        raise ValueError(f"compute_rope_params: theta_base must be a number > 0, got {theta_base!r}")
    # In `dtype` throughout, as the book and Hugging Face compute in float32: then a float64
    # model gets exactly their (float32) angles, and the logits agree to rounding.
    exponents = np.arange(0, head_dim, 2, dtype=dtype) / dtype(head_dim)  # (D/2,) 2i / D
    inv_freq = dtype(1.0) / np.power(dtype(theta_base), exponents)  # (D/2,) theta_base^(-2i/D)
    if freq_config is not None:
        inv_freq = _llama3_scaled(inv_freq, freq_config)
    positions = np.arange(context_length, dtype=dtype)  # (L,)
    angles = np.outer(positions, inv_freq)  # (L, D/2): angle p * inv_freq[i]
    angles = np.concatenate([angles, angles], axis=1)  # (L, D): channel i and i + D/2 share an angle
    return Tensor(np.cos(angles)), Tensor(np.sin(angles))


def _llama3_scaled(inv_freq: np.ndarray, freq_config) -> np.ndarray:
    """Llama 3's frequency scaling of the inverse frequencies (see the module docstring)."""
    missing = [key for key in _FREQ_KEYS if key not in freq_config]
    if missing:
        raise ValueError(f"compute_rope_params: freq_config lacks {missing}; it needs {list(_FREQ_KEYS)}")
    dtype = inv_freq.dtype.type
    factor, low, high = (dtype(freq_config[key]) for key in _FREQ_KEYS[:3])
    original = dtype(freq_config["original_context_length"])
    if not high > low > 0 or not factor > 0:
        raise ValueError(f"compute_rope_params: freq_config needs factor > 0 and high_freq_factor > low_freq_factor > 0, "
                         f"got {dict(freq_config)}")
    wavelength = dtype(2 * math.pi) / inv_freq  # (D/2,) tokens per full turn
    low_freq_wavelength, high_freq_wavelength = original / low, original / high
    scaled = np.where(wavelength > low_freq_wavelength, inv_freq / factor, inv_freq)  # long waves slowed
    smooth = (original / wavelength - low) / (high - low)
    smoothed = (1 - smooth) * inv_freq / factor + smooth * inv_freq
    medium = (wavelength <= low_freq_wavelength) & (wavelength >= high_freq_wavelength)
    return np.where(medium, smoothed, scaled)
