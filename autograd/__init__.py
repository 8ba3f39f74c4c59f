"""autograd: a small reverse-mode automatic differentiation engine on NumPy arrays.

    >>> import autograd
    >>> x = autograd.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> y = (x * x).sum()
    >>> y.backward()
    >>> x.grad
    tensor([2., 4., 6.])

Files, in reading order (each imports only the ones before it): `function.py` (`Function`, one
recorded operation, and `no_grad`), `backward.py` (the backward walk and `grad`), `ops.py`
(primitive operations and their backward rules), `device.py` (`device("cpu")`), `reference/`
(the fused neural-network ops -- softmax, cross-entropy, layer norm, GELU, attention... -- in plain
NumPy, one file each: what a learner steps into), `fast/` (the same ops blocked, in place and
threaded: the default), `kernels.py` (the switch between the two: `set_kernels`, `kernels()`,
MINIGPT_KERNELS), `size.py` (`Size`, the type of `x.shape`), `printing.py` (how tensors print,
as PyTorch: `set_printoptions`, `DType`), `tensor.py` (`Tensor`, whole, and `Gradient`, the type
of `.grad`),
`functional.py` (torch.nn.functional: checks the arguments, then runs the active kernel),
`gradcheck.py` (finite-difference checks), `testing.py` (hypothesis strategies to property-test
your own ops; needs `pip install hypothesis`).

PyTorch's surface, so that the book's listings run with `import autograd as torch`: `random.py`
(`manual_seed`, `Generator`: PyTorch's CPU random streams), `creation.py` (`zeros`, `rand`, `arange`, `tril`,
dtypes, `cuda.is_available()`), `torch_api.py` (`torch.cat`, `torch.exp`, `topk`,
`multinomial`...), `serialization.py` (`save` / `load` in safetensors), `autograd.py`
(`torch.autograd.grad`).
"""

import importlib.metadata as _metadata
import math as _math

import numpy as _np

from autograd.function import Function, enable_grad, is_grad_enabled, no_grad
from autograd.backward import grad
from autograd.ops import unbroadcast
from autograd.tensor import Gradient, Tensor, as_tensor, tensor
from autograd.printing import get_printoptions, printoptions, set_printoptions
from autograd.size import Size
from autograd.gradcheck import GradcheckError, gradcheck
from autograd import functional
from autograd.kernels import get_kernels, kernels, set_kernels  # NOTE: `autograd.kernels` is the context manager
from autograd.random import (
    Generator, default_generator, get_rng_state, initial_seed, manual_seed, resolve_generator, seed, set_rng_state,
)
from autograd.creation import (
    arange, backends, bfloat16, cuda, device, double, empty, float16, float32, float64, from_numpy, full,
    full_like, half, int8, int16, int32, int64, linspace, long, ones, ones_like, rand, rand_like,
    randint, randn, randn_like, short, tril, triu, uint8, zeros, zeros_like, randperm, bernoulli,
)
from autograd.torch_api import (
    argmax, bincount, cat, clone, dot, exp, flatten, gather, log, matmul, maximum, mean, minimum,
    multinomial, nonzero, pow, sigmoid, softmax, sqrt, stack, tanh, topk, where,
)
from autograd.torch_api import (
    allclose, chunk, clamp, cos, cumsum, einsum, equal, eye, finfo, get_default_dtype, iinfo, inference_mode,
    isfinite, isinf, isnan, log_softmax, outer, repeat_interleave, rsqrt, set_float32_matmul_precision, sin, split,
    unique,
)
from autograd.torch_api import abs, sum  # noqa: A004,F401 - torch's names; shadow the builtins here only
from autograd.serialization import load, save
from autograd import autograd  # torch.autograd.grad(...) under `import autograd as torch`

# torch's dtype names that are Python builtins too (torch.float, torch.int, torch.bool): bound at
# the end so that nothing in this file uses the shadowed builtins.
float = float32  # noqa: A001
int = int32  # noqa: A001
bool = _np.bool_  # noqa: A001
all = torch_api.all_  # noqa: A001 - torch.all / torch.any
any = torch_api.any_  # noqa: A001

inf = _math.inf  # -torch.inf masks future tokens (book ch. 3.5.1)
nan = _math.nan
pi = _math.pi  # the GELU approximation's sqrt(2 / pi) (book ch. 4.3)

try:
    __version__ = _metadata.version("minigpt")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"


class version:  # noqa: N801 - torch.version's name
    """torch.version: minigpt's version, and no CUDA (`torch.version.cuda` is None, as on a CPU-only PyTorch)."""

    __version__ = __version__
    cuda = None

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
    "set_kernels",
    "kernels",
    "get_kernels",
    "manual_seed",
    "default_generator",
    "resolve_generator",
    "Generator", "initial_seed", "seed", "get_rng_state", "set_rng_state", "randperm", "bernoulli",
    "Gradient",
    "grad",
    "autograd",
    "set_printoptions",
    "get_printoptions",
    "printoptions",
    "Size",
    "save",
    "load",
    # PyTorch-compatible creation functions, dtypes and devices (autograd/creation.py)
    "empty", "zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "rand", "randn",
    "rand_like", "randn_like", "randint", "arange", "linspace", "tril", "triu", "from_numpy",
    "float32", "float64", "float16", "bfloat16", "double", "half", "int64", "long", "int32", "int16",
    "short", "int8", "uint8", "device", "cuda", "backends", "inf", "nan", "pi",
    # PyTorch-compatible functions (autograd/torch_api.py); abs, sum, float, int and bool are
    # left out so that `from autograd import *` does not shadow the builtins.
    "exp", "log", "sqrt", "tanh", "pow", "sigmoid", "softmax", "mean", "argmax", "topk", "cos", "sin", "rsqrt", "outer",
    "gather", "dot", "clone", "flatten", "nonzero", "bincount", "multinomial",
    # more of torch's names the book's code uses (scripts/book_names.py; docs/book.md)
    "allclose", "chunk", "clamp", "cumsum", "einsum", "equal", "eye", "finfo", "get_default_dtype",
    "iinfo", "inference_mode", "isfinite", "isinf", "isnan", "log_softmax", "repeat_interleave",
    "set_float32_matmul_precision", "split", "unique",
]

# torch's nn, optim and utils are minigpt's: `from minigpt import nn` attaches them here
# (minigpt/nn/torch_names.py; the engine never imports minigpt). Before that, say so.
_TORCH_NAMES_FROM_MINIGPT = {"nn": "torch.nn", "optim": "torch.optim", "utils": "torch.utils.data"}


def __getattr__(name: str):
    """Module attribute fallback (PEP 562): `autograd.nn`, `.optim` or `.utils` asked for before
    `from minigpt import nn` raises an AttributeError that says which import provides it (Python's
    own message suggested `autograd.nan`)."""
    if name in _TORCH_NAMES_FROM_MINIGPT:
        raise AttributeError(
            f"module 'autograd' has no attribute {name!r} yet: {_TORCH_NAMES_FROM_MINIGPT[name]} is minigpt's; run "
            f"`from minigpt import nn` after `import autograd as torch` (it adds autograd.nn, .optim and .utils.data)"
        )
    raise AttributeError(f"module 'autograd' has no attribute {name!r}")
