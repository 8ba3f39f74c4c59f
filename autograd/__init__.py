"""autograd: a small reverse-mode automatic differentiation engine on NumPy arrays.

    >>> import autograd
    >>> x = autograd.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> y = (x * x).sum()
    >>> y.backward()
    >>> x.grad
    array([2., 4., 6.], dtype=float32)

Files, in reading order: `tensor.py` (Tensor, Function, the backward walk, no_grad), `ops.py`
(primitive operations and their backward rules), `functional.py` (fused neural-network functions
like softmax, cross-entropy, layer norm, attention), `gradcheck.py` (finite-difference checks),
`testing.py` (hypothesis strategies to property-test your own ops; needs `pip install hypothesis`).
"""

from autograd.tensor import (
    Function,
    Tensor,
    as_tensor,
    enable_grad,
    is_grad_enabled,
    no_grad,
    tensor,
)
from autograd.ops import cat, matmul, maximum, minimum, stack, unbroadcast, where
from autograd.gradcheck import GradcheckError, gradcheck
from autograd import functional
from autograd.random import default_generator, manual_seed, resolve_generator

__all__ = [
    "Function",
    "Tensor",
    "tensor",
    "as_tensor",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "cat",
    "stack",
    "where",
    "maximum",
    "minimum",
    "matmul",
    "unbroadcast",
    "gradcheck",
    "GradcheckError",
    "functional",
    "manual_seed",
    "default_generator",
    "resolve_generator",
]
