"""Filling parameters in place with PyTorch's initialisation formulas: `torch.nn.init`.

The book's LoRA layer (appendix E.4) draws its A matrix as `nn.Linear` draws its weight:

    torch.nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

Every function here fills the tensor it is given, in place and without recording a graph (as
PyTorch's run under `no_grad`), draws from `generator` or the default generator
(`torch.manual_seed`), and returns the tensor. The draws are PyTorch's (autograd/random.py), so
after the same `manual_seed` the values are PyTorch's.

References: torch/nn/init.py (PyTorch 2.13): `calculate_gain`, `_calculate_fan_in_and_fan_out`,
`kaiming_uniform_`, `uniform_`, `normal_`; He et al. 2015, "Delving Deep into Rectifiers", eq. 10-16.
"""

from __future__ import annotations

import math

from autograd.function import no_grad
from autograd.tensor import Tensor

_GAINS = {"linear": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0, "sigmoid": 1.0,
          "tanh": 5.0 / 3, "relu": math.sqrt(2.0), "selu": 3.0 / 4}


def _check_tensor(tensor, function: str) -> Tensor:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"nn.init.{function}: tensor must be a Tensor (or Parameter), got {type(tensor).__name__}")
    return tensor


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The gain that keeps activations' variance for a nonlinearity (torch.nn.init.calculate_gain):
    1 for linear/sigmoid, 5/3 for tanh, sqrt(2) for relu, sqrt(2 / (1 + a^2)) for leaky_relu with
    negative slope a (`param`, default 0.01), 3/4 for selu.

    Raises: ValueError for an unknown nonlinearity or a slope that is not a number."""
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"calculate_gain: negative_slope {slope!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity not in _GAINS:
        raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}; expected one of "
                         f"{sorted(_GAINS) + ['leaky_relu']}")
    return _GAINS[nonlinearity]


def _calculate_fan_in_and_fan_out(tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight (out, in, *kernel): in * prod(kernel), out * prod(kernel).

    Raises: ValueError for a tensor of fewer than 2 dimensions (as PyTorch)."""
    tensor = _check_tensor(tensor, "_calculate_fan_in_and_fan_out")
    if tensor.ndim < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions, "
                         f"got shape {tuple(tensor.shape)}")
    receptive_field = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu",
                     generator=None) -> Tensor:
    """Fill with U(-bound, bound), bound = gain * sqrt(3 / fan) (He et al. 2015; torch.nn.init.kaiming_uniform_).

    Args:
        tensor: the weight, at least 2-D (out, in, ...); float32 or float64; filled in place.
        a: the negative slope of the leaky ReLU after this layer (`nn.Linear` uses sqrt(5)).
        mode: "fan_in" (keeps the forward pass's variance) or "fan_out" (the backward's).
        nonlinearity: see `calculate_gain`.
        generator: an `autograd.Generator`; None draws from the default generator.

    Returns: `tensor`. Raises: ValueError for a bad mode or nonlinearity or a tensor under 2-D.
    """
    tensor = _check_tensor(tensor, "kaiming_uniform_")
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming_uniform_: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    fan = fan_in if mode == "fan_in" else fan_out
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)  # the same float64 steps as PyTorch
    bound = math.sqrt(3.0) * std
    with no_grad():
        return tensor.uniform_(-bound, bound, generator=generator)


def uniform_(tensor, a: float = 0.0, b: float = 1.0, generator=None) -> Tensor:
    """Fill with U(a, b) in place (torch.nn.init.uniform_); returns `tensor`."""
    with no_grad():
        return _check_tensor(tensor, "uniform_").uniform_(a, b, generator=generator)


def normal_(tensor, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
    """Fill with N(mean, std^2) in place (torch.nn.init.normal_); returns `tensor`."""
    with no_grad():
        return _check_tensor(tensor, "normal_").normal_(mean, std, generator=generator)


def constant_(tensor, val: float) -> Tensor:
    """Fill with `val` in place (torch.nn.init.constant_); returns `tensor`. No random draw."""
    tensor = _check_tensor(tensor, "constant_")
    tensor.data[...] = val
    tensor._version += 1
    return tensor


def ones_(tensor) -> Tensor:
    """Fill with 1 in place (torch.nn.init.ones_; LayerNorm's scale); returns `tensor`."""
    return constant_(tensor, 1.0)


def zeros_(tensor) -> Tensor:
    """Fill with 0 in place (torch.nn.init.zeros_; biases, LoRA's B); returns `tensor`."""
    return constant_(tensor, 0.0)
