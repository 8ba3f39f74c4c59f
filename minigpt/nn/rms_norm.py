"""RMS normalisation, the norm of Llama 3 and Qwen3: `RMSNorm` (PyTorch's) and `Qwen3RMSNorm` (the book's).

Llama and Qwen drop LayerNorm's centring and shift: each row is divided by its root mean square
and scaled, out = x / sqrt(mean(x^2) + eps) * weight. The two classes compute the same thing with
the same fused op (`autograd.functional.rms_norm`) and differ only in their names, so that each
model's state-dict keys equal the book's:

- `RMSNorm(normalized_shape, eps=None, elementwise_affine=True)` is torch.nn.RMSNorm, whose scale
  is `weight`: the book's Llama 3 uses it (`nn.RMSNorm(emb_dim, eps=1e-5)`, keys `norm1.weight`).
- `Qwen3RMSNorm(emb_dim, eps=1e-6, bias=False, qwen3_compatible=True)` is the book's Qwen3
  `RMSNorm` class, whose scale is `scale` (and an optional `shift`): keys `norm1.scale`.

Shape letters: (..., C), C = emb_dim (or head_dim for Qwen3's per-head q/k norm).

References: Zhang & Sennrich 2019, "Root Mean Square Layer Normalization"; torch.nn.RMSNorm;
Raschka, LLMs-from-scratch ch05/07_gpt_to_llama and ch05/11_qwen3 (`RMSNorm`).
"""

from __future__ import annotations

import numbers

import numpy as np

from autograd import Tensor
from autograd import functional as F
from minigpt.nn.module import Module, Parameter

__all__ = ["RMSNorm", "Qwen3RMSNorm"]


def _float_dtype(dtype, layer: str):
    """float32 for None and for the low-precision dtypes (stored as float32 here), float64 kept."""
    if dtype is None:
        return np.float32
    if np.dtype(dtype) == np.float64:
        return np.float64
    return np.float32


class RMSNorm(Module):
    """torch.nn.RMSNorm: out = x / sqrt(mean(x^2) + eps) * weight over the trailing dimensions.

    Args:
        normalized_shape: an int C or a tuple of the trailing dimensions normalised together.
        eps: added to the mean square; None: the machine epsilon of the input's dtype (PyTorch's
            default). The book's Llama passes 1e-5.
        elementwise_affine: learn `weight` (ones at first); False: no parameter.
        dtype: accepted for PyTorch's and the book's signature (`dtype=cfg["dtype"]`): float64
            keeps float64, any other dtype stores float32 (bfloat16 weights compute in float32).

    Attributes:
        weight: Parameter of shape normalized_shape, or None.

    Shapes: (..., *normalized_shape) -> the same.

    Raises:
        ValueError: a size that is not a positive integer, or a bad eps (in forward, from
            `F.rms_norm`: an input whose trailing dimensions differ).

    References: torch.nn.RMSNorm; Zhang & Sennrich 2019.
    """

    def __init__(self, normalized_shape, eps: float | None = None, elementwise_affine: bool = True, dtype=None):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, numbers.Integral) else tuple(normalized_shape)
        if not shape or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in shape):
            raise ValueError(f"RMSNorm: normalized_shape must be a positive int or a tuple of them, got {normalized_shape!r}")
        self.normalized_shape = tuple(int(s) for s in shape)
        self.eps = eps
        self.elementwise_affine = bool(elementwise_affine)
        dtype = _float_dtype(dtype, "RMSNorm")
        self.weight = Parameter(np.ones(self.normalized_shape, dtype=dtype)) if self.elementwise_affine else None

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)  # (..., C) -> (..., C)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"


class Qwen3RMSNorm(Module):
    """The book's Qwen3 `RMSNorm`: out = x / sqrt(mean(x^2) + eps) * scale (+ shift).

    Args:
        emb_dim: the size C of the normalised (last) dimension.
        eps: added to the mean square before the root; 1e-6 as Qwen3.
        bias: learn a `shift` (zeros at first) added after the scale (Qwen3 has none).
        qwen3_compatible: the book computes in float32 for bfloat16 inputs; here every input is
            float32 or float64 already, so this changes nothing (kept for the book's signature).

    Attributes:
        scale: Parameter (C,) of ones. shift: Parameter (C,) of zeros, or None.

    Shapes: (..., C) -> (..., C).

    Raises:
        ValueError: emb_dim not a positive integer; eps not a finite number >= 0 (at the first call).

    References: Raschka, LLMs-from-scratch pkg/llms_from_scratch/qwen3.py (`RMSNorm`); Hugging
    Face `Qwen3RMSNorm`.
    """

    def __init__(self, emb_dim: int, eps: float = 1e-6, bias: bool = False, qwen3_compatible: bool = True):
        super().__init__()
        if isinstance(emb_dim, bool) or not isinstance(emb_dim, numbers.Integral) or emb_dim < 1:
            raise ValueError(f"Qwen3RMSNorm: emb_dim must be a positive integer, got {emb_dim!r}")
        self.emb_dim, self.eps, self.qwen3_compatible = int(emb_dim), eps, qwen3_compatible
        self.scale = Parameter(np.ones(self.emb_dim, dtype=np.float32))
        self.shift = Parameter(np.zeros(self.emb_dim, dtype=np.float32)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        out = F.rms_norm(x, self.emb_dim, self.scale, self.eps)  # (..., C) -> (..., C)
        return out + self.shift if self.shift is not None else out

    def extra_repr(self) -> str:
        return f"({self.emb_dim},), eps={self.eps}"
