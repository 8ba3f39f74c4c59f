"""GELU, the activation of the GPT feed-forward block (book ch. 4.3), forward and backward in plain NumPy.

Shape letters: any shape `(...)`; the op is element-wise.
"""

from __future__ import annotations

import math

import numpy as np

from autograd.function import Function

__all__ = ["Gelu"]

# Hendrycks & Gimpel 2016, section 2: GELU(x) ~ 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_CUBIC = 0.044715
# NOTE: NumPy has no vectorised erf; math.erf per element is exact but slow (GPT-2 uses tanh).
erf = np.vectorize(math.erf, otypes=[np.float64])


class Gelu(Function):
    """GELU(x) = x * Phi(x), Phi the standard normal CDF; the tanh approximation or the exact erf.

    approximate="tanh" (GPT-2's and the book's formula):
        u = sqrt(2/pi) (x + 0.044715 x^3),  t = tanh(u),  out = 0.5 x (1 + t)
        dout/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    approximate="none" (exact):
        Phi(x) = 0.5 (1 + erf(x / sqrt 2)),  out = x Phi(x)
        dout/dx = Phi(x) + x phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)

    Args (of `forward`):
        x: float array (...), float32 or float64.
        approximate: "tanh" or "none" (checked by `autograd.functional.gelu`).

    Returns:
        out: array (...), x's dtype. `backward(dout)` returns dx (...), x's dtype.

    Raises: nothing of its own: `autograd.functional.gelu` checks x's dtype and `approximate`.

    References: Hendrycks & Gimpel 2016, "Gaussian Error Linear Units", section 2 (the tanh
    approximation); Raschka, "Build a Large Language Model (From Scratch)", ch. 4.3;
    torch.nn.functional.gelu (approximate="tanh" / "none").
    """

    def forward(self, x, approximate):
        self.x, self.approximate = x, approximate
        if approximate == "tanh":
            # NOTE: x * x * x, not x**3: NumPy's power on float32 arrays is ~180x slower (DESIGN.md).
            u = SQRT_2_OVER_PI * (x + GELU_CUBIC * x * x * x)  # 1. (...)
            t = np.tanh(u)  # 2. (...); saved: backward needs tanh(u), recomputing it costs a tanh
            out = 0.5 * x * (1 + t)  # 3. (...)
            self.t = t
            return out
        # Exact: erf runs in float64 (math.erf), the CDF is cast back to x's dtype.
        cdf = (0.5 * (1.0 + erf(x / math.sqrt(2.0)))).astype(x.dtype)  # 1. Phi(x) (...); saved
        out = x * cdf  # 2. (...)
        self.cdf = cdf
        return out

    def backward(self, dout):
        x = self.x  # (...)
        if self.approximate == "tanh":
            t = self.t  # (...)
            # 3. reverses out = 0.5 x (1 + t): x appears twice, directly and through t.
            dx = 0.5 * (1 + t) * dout  # (...) the direct path
            dt = 0.5 * x * dout  # (...)
            # 2. reverses t = tanh(u): dtanh/du = 1 - tanh(u)^2.
            du = (1 - t * t) * dt  # (...)
            # 1. reverses u = sqrt(2/pi) (x + 0.044715 x^3): add the path through u.
            dx = dx + SQRT_2_OVER_PI * (1 + 3 * GELU_CUBIC * x * x) * du  # (...)
            return dx
        # 2. reverses out = x * cdf: d/dx = Phi(x) + x * dPhi/dx.
        # 1. reverses cdf = Phi(x) = 0.5 (1 + erf(x / sqrt 2)): dPhi/dx = phi(x), the standard normal density.
        pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)  # (...) phi(x)
        dx = dout * (self.cdf + x * pdf)  # (...)
        return dx
