"""PyTorch's top-level functions that the book calls: `torch.cat`, `torch.exp`, `topk`, `multinomial`...

With `import autograd as torch`, a reader types the book's listings unchanged. The Tensor methods
(`x.exp()`, `x.topk(k)`, `x.masked_fill_(...)`, `x.to(device)`...) are all in `tensor.py`; this
file adds the module-level spellings (`torch.exp(x)` is `x.exp()`), the functions that take
several tensors (`cat`, `stack`, `where`, `maximum`, `minimum`, `matmul`), and the few that make
new tensors without gradient (`nonzero`, `bincount`, `multinomial`).

References: PyTorch docs, torch (the "Indexing, Slicing, Joining" and "Math" operations); book
chapters 3 (dot, cat), 4 (print_gradients), 5 (topk, multinomial, where), appendix A.
"""


from __future__ import annotations

import numpy as np

from autograd import functional
from autograd import random as _random
from autograd.device import check_device
from autograd.function import no_grad
from autograd.ops import Cat, Matmul, Maximum, Stack, Where, _cast, _normalize_dim, _promote
from autograd.random import resolve_generator
from autograd.tensor import Tensor, TopK, as_tensor


def _check_tensor(value, function: str, argument: str = "input") -> Tensor:
    """`value` itself when it is a Tensor, else a TypeError naming `function` and `argument`."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{function}: {argument} must be a Tensor, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------------------------
# Functions that take several tensors (module level, as torch.cat / torch.where ...)
# --------------------------------------------------------------------------------------------


def _check_tensor_list(tensors, name: str) -> list:
    """`tensors` (a sequence of Tensors or numbers) as a non-empty list of Tensors."""
    if isinstance(tensors, Tensor) or not hasattr(tensors, "__iter__"):
        raise TypeError(f"{name} expects a sequence of tensors, got {type(tensors).__name__}")
    tensors = [as_tensor(t) for t in tensors]
    if not tensors:
        raise ValueError(f"{name} expects at least one tensor, got an empty sequence")
    return tensors


def cat(tensors, dim: int = 0) -> Tensor:
    """Join tensors along an existing dimension `dim` (torch.cat).

    Raises:
        ValueError: the tensors differ in rank or in a dimension other than `dim`.
    """
    tensors = _check_tensor_list(tensors, "cat")
    first = tensors[0]
    axis = _normalize_dim(dim, first.ndim)[0] if first.ndim else None
    for i, t in enumerate(tensors):
        if t.ndim != first.ndim or t.ndim == 0 or any(
            s != f for d, (s, f) in enumerate(zip(t.shape, first.shape)) if d != axis
        ):
            raise ValueError(
                f"cat: tensor {i} has shape {t.shape}, which does not match tensor 0's shape "
                f"{first.shape} outside dim {dim}"
            )
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:  # mixed dtypes: cast to the common one, as torch.cat (see _promote)
        floats = [d for d in dtypes if d.kind == "f"]
        target = np.result_type(*floats) if floats else np.result_type(*dtypes)
        tensors = [_cast(t, target) for t in tensors]
    return Cat.apply(*tensors, dim=dim)


def stack(tensors, dim: int = 0) -> Tensor:
    """Join same-shape tensors along a new dimension `dim` (torch.stack): unsqueeze, then cat.

    Raises:
        ValueError: the tensors have different shapes.
    """
    tensors = _check_tensor_list(tensors, "stack")
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: tensor {i} has shape {t.shape}, tensor 0 has {tensors[0].shape}")
    return Stack.apply(*[t.unsqueeze(dim) for t in tensors], dim=dim)


def where(condition, input, other) -> Tensor:  # noqa: A002 - torch.where's argument names
    """Elementwise `input` where `condition` is True, else `other` (torch.where). Numbers are allowed.

    Args:
        condition: a bool array or bool Tensor, broadcastable with `input` and `other`.
        input, other: tensors or numbers (the book's ch. 5.3.2 passes them by keyword).
    """
    a, b = input, other
    condition = condition.data if isinstance(condition, Tensor) else np.asarray(condition)
    if condition.dtype != np.bool_:
        raise TypeError(f"where: condition must be bool, got dtype {condition.dtype}")
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else None
    a, b = _promote(as_tensor(a, like), as_tensor(b, like))
    try:
        np.broadcast_shapes(condition.shape, a.shape, b.shape)
    except ValueError:
        raise ValueError(f"where: shapes {condition.shape}, {a.shape} and {b.shape} cannot be broadcast together") from None
    # The output has the broadcast shape of all three; expand the values so gradients unbroadcast.
    out_shape = np.broadcast_shapes(condition.shape, a.shape, b.shape)
    condition = np.broadcast_to(condition, out_shape)
    return Where.apply(a, b, condition=condition)


def maximum(a, b) -> Tensor:
    """Elementwise maximum of two tensors (or a tensor and a number), as torch.maximum."""
    like = a if isinstance(a, Tensor) else b
    return Maximum.apply(*_promote(as_tensor(a, like), as_tensor(b, like)))


def minimum(a, b) -> Tensor:
    """Elementwise minimum, as torch.minimum: -maximum(-a, -b)."""
    like = a if isinstance(a, Tensor) else b
    return -maximum(-as_tensor(a, like), -as_tensor(b, like))


def matmul(a, b) -> Tensor:
    """Matrix product with NumPy/PyTorch rules (see `Matmul`)."""
    return Matmul.apply(*_promote(as_tensor(a), as_tensor(b)))


# --------------------------------------------------------------------------------------------
# Elementwise functions and reductions (torch.exp(x) is x.exp() ...)
# --------------------------------------------------------------------------------------------


def exp(input: Tensor) -> Tensor:  # noqa: A002 - torch's argument name
    """e ** x, elementwise (torch.exp)."""
    return as_tensor(input).exp()


def log(input: Tensor) -> Tensor:  # noqa: A002
    """Natural logarithm, elementwise (torch.log)."""
    return as_tensor(input).log()


def sqrt(input: Tensor) -> Tensor:  # noqa: A002
    """Square root, elementwise (torch.sqrt)."""
    return as_tensor(input).sqrt()


def cos(input: Tensor) -> Tensor:  # noqa: A002
    """Cosine, elementwise (torch.cos; the RoPE tables of the book's Llama 3 / Qwen3)."""
    return as_tensor(input).cos()


def sin(input: Tensor) -> Tensor:  # noqa: A002
    """Sine, elementwise (torch.sin)."""
    return as_tensor(input).sin()


def rsqrt(input: Tensor) -> Tensor:  # noqa: A002
    """1 / sqrt(x), elementwise (torch.rsqrt; the book's Qwen3 RMSNorm)."""
    return as_tensor(input).rsqrt()


def outer(input: Tensor, vec2: Tensor) -> Tensor:  # noqa: A002
    """The outer product of two 1-D tensors, (n,) x (m,) -> (n, m) (torch.outer; RoPE's angles).

    Raises: ValueError for inputs that are not 1-D."""
    a, b = as_tensor(input), as_tensor(vec2)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"outer: input and vec2 must be 1-D, got shapes {a.shape} and {b.shape}")
    return a.unsqueeze(1) * b.unsqueeze(0)


def tanh(input: Tensor) -> Tensor:  # noqa: A002
    """Hyperbolic tangent, elementwise (torch.tanh)."""
    return as_tensor(input).tanh()


def abs(input: Tensor) -> Tensor:  # noqa: A002
    """Absolute value, elementwise (torch.abs)."""
    return as_tensor(input).abs()


def pow(input, exponent) -> Tensor:  # noqa: A002
    """input ** exponent; either may be a number (torch.pow; the GELU of ch. 4.3 uses pow(x, 3))."""
    if isinstance(input, Tensor):
        return input ** exponent
    return as_tensor(exponent).__rpow__(input)


def sigmoid(input: Tensor) -> Tensor:  # noqa: A002
    """The logistic function, elementwise (torch.sigmoid; appendix A.3)."""
    return as_tensor(input).sigmoid()


def softmax(input: Tensor, dim: int, dtype=None) -> Tensor:  # noqa: A002
    """Softmax along `dim` (torch.softmax), stable (see autograd.functional.softmax); `dtype`
    converts the input first (PyTorch computes in that dtype)."""
    input = as_tensor(input)
    return (input if dtype is None else input.to(dtype)).softmax(dim)


def sum(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:  # noqa: A001,A002
    """Sum over `dim` (torch.sum); a bool tensor counts its True values (int64), as PyTorch."""
    input = as_tensor(input)
    if input.dtype == np.bool_:
        input = input.long()
    return input.sum(dim=dim, keepdim=keepdim)


def mean(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:  # noqa: A002
    """Mean over `dim` (torch.mean)."""
    return as_tensor(input).mean(dim=dim, keepdim=keepdim)


def argmax(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:  # noqa: A002
    """Index of the largest value, int64 (torch.argmax; greedy decoding in ch. 4.7)."""
    return _check_tensor(input, "argmax").argmax(dim=dim, keepdim=keepdim)


def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> TopK:  # noqa: A002
    """The k largest values and their indices (torch.topk); see `Tensor.topk`."""
    return _check_tensor(input, "topk").topk(k, dim, largest, sorted)


def gather(input: Tensor, dim: int, index) -> Tensor:  # noqa: A002
    """Values picked along `dim` by `index` (torch.gather); see `Tensor.gather`."""
    return _check_tensor(input, "gather").gather(dim, index)


def dot(input: Tensor, other: Tensor) -> Tensor:  # noqa: A002
    """Inner product of two 1-D tensors (torch.dot); see `Tensor.dot`."""
    return as_tensor(input).dot(other)


def clone(input: Tensor) -> Tensor:  # noqa: A002
    """A differentiable copy (torch.clone)."""
    return _check_tensor(input, "clone").clone()


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:  # noqa: A002
    """Merge dimensions start_dim..end_dim (torch.flatten)."""
    return _check_tensor(input, "flatten").flatten(start_dim, end_dim)


def nonzero(input: Tensor) -> Tensor:  # noqa: A002
    """Indices of the nonzero elements, int64 of shape (count, ndim) (torch.nonzero; ch. 7)."""
    return Tensor._make(np.argwhere(as_tensor(input).data).astype(np.int64), False)


def bincount(input: Tensor, weights=None, minlength: int = 0) -> Tensor:  # noqa: A002
    """Count each non-negative int's occurrences (torch.bincount; the sampling demo of ch. 5.3.1)."""
    values = as_tensor(input).data
    if values.ndim != 1 or values.dtype.kind not in "iu" or (values.size and values.min() < 0):
        raise ValueError(f"bincount: input must be a 1-D tensor of non-negative ints, got {values.dtype} of shape {values.shape}")
    weights = None if weights is None else as_tensor(weights).data
    counts = np.bincount(values, weights=weights, minlength=minlength)
    return Tensor._make(counts if weights is not None else counts.astype(np.int64), False)


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, generator=None) -> Tensor:  # noqa: A002
    """Draw indices with probability proportional to the rows of `input` (torch.multinomial).

    Args:
        input: (V,) or (B, V) non-negative weights (they need not sum to 1), e.g. softmax output.
        num_samples: draws per row; without replacement at most the number of nonzero weights.
        replacement: draw with replacement.
        generator: an `autograd.Generator`, int seed or `np.random.Generator`; None uses the
            default generator (`manual_seed`): after the book's `torch.manual_seed(123)` the
            draws are PyTorch's (Gumbel-max with exponential_ for one sample or no
            replacement, a binary search in the cumulative sums otherwise).

    Returns:
        int64 tensor (num_samples,) or (B, num_samples), no gradient.

    Raises:
        ValueError: input not 1-D/2-D, a negative/non-finite weight, a row summing to 0, or too
            many samples without replacement.

    References: torch.multinomial; book ch. 5.3.1 (probabilistic sampling).
    """
    weights = _check_tensor(input, "multinomial").data
    if weights.ndim not in (1, 2):
        raise ValueError(f"multinomial: input must be 1-D or 2-D, got shape {weights.shape}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ValueError(f"multinomial: num_samples must be a positive int, got {num_samples!r}")
    rows = np.atleast_2d(weights)
    if not np.all(np.isfinite(rows)) or np.any(rows < 0):
        raise ValueError("multinomial: probability tensor contains either inf, nan or element < 0")
    totals = rows.sum(axis=1, dtype=np.float64)
    if np.any(totals <= 0):
        raise ValueError("multinomial: invalid multinomial distribution (sum of probabilities <= 0)")
    if not replacement and num_samples > np.count_nonzero(rows, axis=1).min():
        raise ValueError(f"multinomial: cannot draw {num_samples} samples without replacement from fewer nonzero weights")
    samples = _random.multinomial(resolve_generator(generator), np.atleast_2d(weights), int(num_samples), bool(replacement))
    return Tensor._make(samples[0] if weights.ndim == 1 else samples, False)


# --------------------------------------------------------------------------------------------
# More of torch's functions that the book's code calls (found by scripts/book_names.py)
# --------------------------------------------------------------------------------------------


def clamp(input: Tensor, min=None, max=None) -> Tensor:  # noqa: A002
    """Clip to [min, max] (torch.clamp); see `Tensor.clamp`."""
    return _check_tensor(input, "clamp").clamp(min=min, max=max)


def log_softmax(input: Tensor, dim: int, dtype=None) -> Tensor:  # noqa: A002
    """log(softmax(x)) along `dim`, stable (torch.log_softmax); `dtype` converts the input first."""
    input = _check_tensor(input, "log_softmax")
    return functional.log_softmax(input if dtype is None else input.to(dtype), dim)


def cumsum(input: Tensor, dim: int) -> Tensor:  # noqa: A002
    """Running sum along `dim` (torch.cumsum); see `Tensor.cumsum`."""
    return _check_tensor(input, "cumsum").cumsum(dim)


def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple:  # noqa: A002
    """`chunks` pieces along `dim` (torch.chunk); see `Tensor.chunk`."""
    return _check_tensor(input, "chunk").chunk(chunks, dim)


def split(tensor: Tensor, split_size_or_sections, dim: int = 0) -> tuple:
    """Pieces of a size, or of the sizes listed, along `dim` (torch.split); see `Tensor.split`."""
    return _check_tensor(tensor, "split", "tensor").split(split_size_or_sections, dim)


def repeat_interleave(input: Tensor, repeats: int, dim=None) -> Tensor:  # noqa: A002
    """Each element or slice repeated in place (torch.repeat_interleave); see the Tensor method."""
    return _check_tensor(input, "repeat_interleave").repeat_interleave(repeats, dim)


def einsum(equation: str, *operands) -> Tensor:
    """Sums of products named by index letters (torch.einsum), for one or two operands, differentiable.

    Built from recorded ops: each operand's axes are permuted and broadcast into one product over
    all letters, then summed over the letters the output does not keep.

    Raises:
        ValueError: no "->" output, letters that do not match the operands, or more than two operands.
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    inputs, arrow, output = equation.replace(" ", "").partition("->")
    terms = inputs.split(",")
    if not arrow or len(terms) != len(operands) or len(operands) not in (1, 2) or "." in equation:
        raise ValueError(f"einsum: supports 'ab,bc->ac' with an explicit output and one or two operands, got {equation!r}")
    operands = [as_tensor(t) for t in operands]
    letters = sorted(set("".join(terms)), key=lambda letter: (letter not in output, output.find(letter), letter))
    product = None
    for term, operand in zip(terms, operands):
        if len(term) != operand.ndim or len(set(term)) != len(term):
            raise ValueError(f"einsum: term {term!r} does not fit an operand of shape {operand.shape}")
        order = sorted(range(len(term)), key=lambda axis: letters.index(term[axis]))
        aligned = operand.permute(*order) if order != list(range(len(term))) else operand
        shape = [operand.shape[term.index(letter)] if letter in term else 1 for letter in letters]
        aligned = aligned.reshape(*shape)
        product = aligned if product is None else product * aligned
    summed = [axis for axis, letter in enumerate(letters) if letter not in output]
    return product.sum(dim=tuple(summed)) if summed else product


# NOTE: torch.all and torch.any are bound under those names in autograd/__init__.py only: here
# they would hide Python's all/any from every function of this file.
def all_(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:  # noqa: A002
    """True when every value (along `dim`) is nonzero (torch.all)."""
    return as_tensor(input).all(dim, keepdim)


def any_(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:  # noqa: A002
    """True when some value (along `dim`) is nonzero (torch.any)."""
    return as_tensor(input).any(dim, keepdim)


def isnan(input: Tensor) -> Tensor:  # noqa: A002
    """True where the value is NaN (torch.isnan), a bool tensor."""
    return Tensor._make(np.isnan(as_tensor(input).data), False)


def isinf(input: Tensor) -> Tensor:  # noqa: A002
    """True where the value is +-inf (torch.isinf), a bool tensor."""
    return Tensor._make(np.isinf(as_tensor(input).data), False)


def isfinite(input: Tensor) -> Tensor:  # noqa: A002
    """True where the value is neither inf nor NaN (torch.isfinite), a bool tensor."""
    return Tensor._make(np.isfinite(as_tensor(input).data), False)


def equal(input: Tensor, other: Tensor) -> bool:  # noqa: A002
    """True when both have the same shape and the same values (torch.equal), a Python bool."""
    a, b = as_tensor(input).data, as_tensor(other).data
    return a.shape == b.shape and bool(np.array_equal(a, b))


def allclose(input: Tensor, other: Tensor, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> bool:  # noqa: A002
    """|input - other| <= atol + rtol * |other| everywhere (torch.allclose: its default tolerances),
    a Python bool; the shapes must broadcast."""
    return bool(np.allclose(as_tensor(input).data, as_tensor(other).data, rtol=rtol, atol=atol, equal_nan=equal_nan))


def unique(input: Tensor, sorted: bool = True, return_inverse: bool = False, return_counts: bool = False, dim=None):  # noqa: A002
    """The distinct values, sorted (torch.unique); with `return_inverse` / `return_counts` a tuple.

    Raises:
        ValueError: `dim` given (only the flattened form is supported).
    """
    if dim is not None:
        raise ValueError("unique: dim is not supported; minigpt returns the distinct values of the flattened tensor")
    values, inverse, counts = np.unique(as_tensor(input).data, return_inverse=True, return_counts=True)
    result = [Tensor._make(values, False)]
    if return_inverse:
        result.append(Tensor._make(inverse.reshape(as_tensor(input).shape).astype(np.int64), False))
    if return_counts:
        result.append(Tensor._make(counts.astype(np.int64), False))
    return result[0] if len(result) == 1 else tuple(result)


def eye(n: int, m: int | None = None, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """The n x m identity matrix, float32 unless `dtype` (torch.eye)."""
    check_device(device, "eye")
    return Tensor(np.eye(n, m, dtype=np.float32 if dtype is None else np.dtype(dtype)), requires_grad=requires_grad)


def finfo(dtype=None):
    """Limits of a float dtype, float32 by default: `.min`, `.max`, `.eps`, `.tiny` (torch.finfo; NumPy's finfo)."""
    return np.finfo(np.float32 if dtype is None else np.dtype(dtype))


def iinfo(dtype):
    """Limits of an integer dtype: `.min`, `.max`, `.bits` (torch.iinfo; NumPy's iinfo)."""
    return np.iinfo(np.dtype(dtype))


def get_default_dtype():
    """float32, the dtype of tensors made from Python floats (torch.get_default_dtype)."""
    return np.float32


def set_float32_matmul_precision(precision: str) -> None:
    """Accepted and ignored (torch.set_float32_matmul_precision): NumPy's float32 products use
    full float32 precision, which is PyTorch's "highest".

    Raises:
        ValueError: not "highest", "high" or "medium".
    """
    if precision not in ("highest", "high", "medium"):
        raise ValueError(f"set_float32_matmul_precision: expected 'highest', 'high' or 'medium', got {precision!r}")


class inference_mode(no_grad):  # noqa: N801 - torch's name
    """Like `no_grad` (torch.inference_mode): record no graph inside the block or decorated function.

    Args:
        mode: False records as usual (PyTorch's `inference_mode(False)`).
    """

    def __init__(self, mode: bool = True):
        self.enabled = not mode

    def __call__(self, function=None):
        if function is None:
            return self
        return super().__call__(function)


__all__ = [
    "cos", "sin", "rsqrt", "outer",
    "clamp", "log_softmax", "cumsum", "chunk", "split", "repeat_interleave",
    "einsum", "all_", "any_", "isnan", "isinf", "isfinite", "equal", "allclose", "unique", "eye", "finfo",
    "iinfo", "get_default_dtype", "set_float32_matmul_precision", "inference_mode",
    "TopK", "cat", "stack", "where", "maximum", "minimum", "matmul", "exp", "log", "sqrt", "tanh",
    "abs", "pow", "sigmoid", "softmax", "sum", "mean", "argmax", "topk", "gather", "dot", "clone",
    "flatten", "nonzero", "bincount", "multinomial",
]
