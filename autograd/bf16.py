"""bfloat16 under PyTorch's name, `torch.bfloat16`: stored as bfloat16, computed in float32.

Llama 3 and Qwen3 ship their weights in bfloat16 ("brain floating point": float32's sign and
8-bit exponent, with 7 of its 23 mantissa bits), and the book's configs say
`"dtype": torch.bfloat16`. NumPy has no such dtype; the well-kept `ml_dtypes` package (Google's,
used by JAX and TensorFlow) adds it as a NumPy dtype, with IEEE round-to-nearest-even casts from
float32. minigpt uses it only at the edges, and has one rule:

    **bfloat16 is a precision, not a storage type, inside the engine.** Converting to
    `torch.bfloat16` (`tensor.to(torch.bfloat16)`, `model.to(torch.bfloat16)`,
    `nn.Linear(..., dtype=torch.bfloat16)`, `torch.tensor(..., dtype=torch.bfloat16)`) rounds
    the values to the nearest bfloat16 (ties to even, as PyTorch's float32 -> bfloat16 cast)
    and keeps them in float32 arrays; every op computes in float32 as it always does, and the
    tensor's `dtype` reads float32. Files are where bfloat16 is stored as such: safetensors
    tensors of dtype BF16 are read (`minigpt.hf_weights.SafetensorsReader`) and written (pass
    bfloat16 arrays, e.g. from `to_bfloat16_array`, to `minigpt.checkpoint.atomic_save_safetensors`).

Why not bfloat16 arrays in the engine: NumPy's matrix product has no bfloat16 kernel (ml_dtypes'
loops run element by element, hundreds of times slower than float32 BLAS), and PyTorch's CPU
kernels themselves accumulate bfloat16 products in float32. The cost is memory: a bfloat16 model
takes float32's 4 bytes per parameter in minigpt, not 2. Gradients pass through the rounding
unchanged (the straight-through rule of a cast: PyTorch's cast backward converts the gradient
back to the input's dtype), and an optimizer step updates the float32 values, which are then no
longer bfloat16 exact ("master weights" in float32).

`ml_dtypes` is an optional extra (`pip install "minigpt[bfloat16]"`): GPT-2 in float32 needs
none of this, and it is imported only when bfloat16 is used. Without it, `torch.bfloat16` still
exists (the book's config dicts import fine) and using it raises an ImportError that says what
to install.

References: ml_dtypes (github.com/jax-ml/ml_dtypes), `ml_dtypes.bfloat16`; PyTorch's
`torch.bfloat16` and `c10/util/BFloat16.h` (round to nearest even); Kalamkar et al. 2019,
"A Study of BFLOAT16 for Deep Learning Training".
"""

from __future__ import annotations

import sys

import numpy as np

__all__ = ["bfloat16", "is_bfloat16", "require_ml_dtypes", "round_to_bfloat16", "to_bfloat16_array"]

INSTALL_HINT = 'pip install "minigpt[bfloat16]"  (or: pip install ml_dtypes)'


class _Bfloat16:
    """The object `torch.bfloat16` names: a marker that every dtype argument of minigpt accepts.

    NOTE: not ml_dtypes' type itself, because importing ml_dtypes takes about a second (its C
    extension registers a dozen NumPy dtypes); it is imported only when bfloat16 is used.
    """

    name = "bfloat16"

    def __repr__(self) -> str:
        return "torch.bfloat16"


bfloat16 = _Bfloat16()


def require_ml_dtypes():
    """The `ml_dtypes` module, imported on first use.

    Raises:
        ImportError: it is not installed; the message names the extra to install.
    """
    try:
        import ml_dtypes
    except ImportError:
        raise ImportError(f"bfloat16 needs the ml_dtypes package, an optional extra of minigpt: {INSTALL_HINT}") from None
    return ml_dtypes


def is_bfloat16(dtype) -> bool:
    """True if `dtype` is bfloat16: `torch.bfloat16`, `ml_dtypes.bfloat16`, its np.dtype, or the
    string "bfloat16" (how Hugging Face's config.json names it: `"torch_dtype": "bfloat16"`)."""
    if dtype is bfloat16 or (isinstance(dtype, str) and dtype == "bfloat16"):
        return True
    if isinstance(dtype, np.dtype) and dtype.kind != "V":
        return False  # the common case, kept cheap: every Tensor made from an array asks
    ml_dtypes = sys.modules.get("ml_dtypes")
    if ml_dtypes is None or isinstance(dtype, str) or dtype is None:
        return False  # no bfloat16 NumPy dtype exists before ml_dtypes is imported
    try:
        return np.dtype(dtype) == np.dtype(ml_dtypes.bfloat16)
    except TypeError:
        return False


def round_to_bfloat16(array: np.ndarray) -> np.ndarray:
    """The float32 array of `array`'s values rounded to bfloat16 (ties to even; NaN stays NaN).

    Example: 1 + 2**-8 lies halfway between the bfloat16 neighbours 1 and 1 + 2**-7, and rounds
    to 1, whose last mantissa bit is even.

    Args:
        array: float16/32/64 (or integer) array of any shape.

    Returns:
        float32 array, same shape. float64 input goes through float32 first, as PyTorch's
        `double_tensor.to(torch.bfloat16)` does (its BFloat16 is built from a float).

    Raises:
        ImportError: ml_dtypes is missing.
    """
    bf16 = require_ml_dtypes().bfloat16
    return np.asarray(array).astype(np.float32, copy=False).astype(bf16).astype(np.float32)


def to_bfloat16_array(array: np.ndarray) -> np.ndarray:
    """`array` as an ml_dtypes bfloat16 array (2 bytes per value), for writing to a file.

    Raises:
        ImportError: ml_dtypes is missing.
    """
    bf16 = require_ml_dtypes().bfloat16
    return np.asarray(array).astype(np.float32, copy=False).astype(bf16)
