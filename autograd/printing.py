"""How a tensor prints: PyTorch's layout, so the book's printed tensors read the same on minigpt.

    >>> import autograd as torch
    >>> torch.tensor([[0.43, 0.15], [0.55, 0.87]])
    tensor([[0.4300, 0.1500],
            [0.5500, 0.8700]])
    >>> torch.tensor([1e-5, 1.0])
    tensor([1.0000e-05, 1.0000e+00])

The rules, as PyTorch 2.13 applies them (read in torch/_tensor_str.py, checked side by side):

- One format for the whole tensor, chosen from its nonzero finite values (or, for a summarised
  tensor, from the values shown). Floats print with `precision` digits (4) after the point;
  scientific notation when the largest |value| over the smallest exceeds 1000, the largest
  exceeds 1e8 or the smallest is below 1e-4 (`sci_mode` forces it on or off); a float tensor
  whose values are all whole numbers prints them as `1.`, `2.` ("int mode"). Integers and bools
  print as Python prints them. Every element is right-aligned to the widest one.
- Rows hold as many elements as fit in `linewidth` (80) characters, less the indent; nested
  brackets are indented under their parent, and the blank lines between blocks grow with the
  depth (one for a 3-D tensor's matrices, two between 4-D blocks).
- Past `threshold` (1000) elements a tensor is summarised: `edgeitems` (3) at each end of every
  dimension, `...` between.
- After the values come the suffixes PyTorch adds, on the same line while it stays within the
  line width, else on the next line under the values: `size=(...)` for an empty tensor that is not
  1-D, `dtype=torch.float64` for any dtype but the defaults (float32, int64, bool), then
  `grad_fn=<MulBackward0>` or `requires_grad=True`.

The options are process-wide, as PyTorch's: `set_printoptions`, `get_printoptions` and the
`printoptions(...)` context manager.

References: torch.set_printoptions, torch/_tensor_str.py (PyTorch 2.13: _Formatter,
_tensor_str, _add_suffixes); numpy.set_printoptions, from which PyTorch took its options.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

_DEFAULTS = {"precision": 4, "threshold": 1000, "edgeitems": 3, "linewidth": 80, "sci_mode": None}
_PROFILES = {
    "default": {"precision": 4, "threshold": 1000, "edgeitems": 3, "linewidth": 80},
    "short": {"precision": 2, "threshold": 1000, "edgeitems": 2, "linewidth": 80},
    "full": {"precision": 4, "threshold": math.inf, "edgeitems": 3, "linewidth": 80},
}
_options = dict(_DEFAULTS)

# The dtypes PyTorch leaves out of a tensor's repr (its defaults for floats, ints and bools).
_DEFAULT_DTYPES = (np.dtype(np.float32), np.dtype(np.int64), np.dtype(np.bool_), np.dtype(np.complex64))


def set_printoptions(precision: int | None = None, threshold: float | None = None, edgeitems: int | None = None,
                     linewidth: int | None = None, profile: str | None = None, sci_mode: bool | None = None) -> None:
    """Set how tensors print (torch.set_printoptions); options not given keep their value.

    Args:
        precision: digits after the decimal point (default 4).
        threshold: above this many elements a tensor prints summarised, with `...` (default 1000).
        edgeitems: items shown at each end of a summarised dimension (default 3).
        linewidth: characters per line, for wrapping rows and placing suffixes (default 80).
        profile: "default", "short" (precision 2, edgeitems 2) or "full" (threshold infinite,
            every element printed) sets the four options above at once, before the others apply.
        sci_mode: True forces scientific notation, False forbids it, None lets each tensor's
            values choose. NOTE: as in PyTorch, every call sets it, so `set_printoptions(precision=2)`
            also resets `sci_mode` to None.

    Raises:
        ValueError: an unknown profile, or a negative or non-integer precision, edgeitems or linewidth.

    References: torch.set_printoptions (the book's appendix A calls `sci_mode=False`).
    """
    if profile is not None:
        if profile not in _PROFILES:
            raise ValueError(f"set_printoptions: profile must be 'default', 'short' or 'full', got {profile!r}")
        _options.update(_PROFILES[profile])
    for name, value in (("precision", precision), ("edgeitems", edgeitems), ("linewidth", linewidth)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0):
            raise ValueError(f"set_printoptions: {name} must be a non-negative int, got {value!r}")
    given = {"precision": precision, "threshold": threshold, "edgeitems": edgeitems, "linewidth": linewidth}
    _options.update({name: value for name, value in given.items() if value is not None})
    _options["sci_mode"] = sci_mode


def get_printoptions() -> dict:
    """The current print options, a dict that `set_printoptions(**options)` accepts (torch.get_printoptions)."""
    return dict(_options)


@contextlib.contextmanager
def printoptions(**options):
    """Change the print options inside a `with` block only (torch.printoptions).

    Example:
        >>> with printoptions(precision=2):
        ...     print(x)
    """
    saved = get_printoptions()
    set_printoptions(**options)
    try:
        yield
    finally:
        set_printoptions(**saved)


def dtype_name(dtype) -> str:
    """PyTorch's name of a NumPy dtype: float32 -> 'torch.float32', bool -> 'torch.bool'."""
    dtype = np.dtype(dtype)  # a DType too: NumPy reads its `.dtype`
    return "torch.bool" if dtype == np.bool_ else f"torch.{dtype.name}"


class DType:
    """A tensor's dtype: NumPy's dtype that prints as PyTorch's (`print(x.dtype)` -> torch.int64).

    `Tensor.dtype` returns one. It equals, hashes and converts as the NumPy dtype it holds
    (`x.dtype == np.float32`, `x.dtype == torch.float32`, `np.zeros(3, dtype=x.dtype)`,
    `arr.astype(x.dtype)`, `x.dtype.kind`, `x.dtype.itemsize`): NumPy takes any object with a
    `.dtype` attribute as a dtype. One instance per NumPy dtype (`DType.of`).

    NOTE: `print`, `str` and `repr` give PyTorch's name, `torch.float32`; an f-string or `format`
    gives NumPy's, `float32`, as minigpt's error messages (and the tests that read them) spell it.
    NumPy refuses subclasses of its dtypes ("Cannot subclass DType"), hence a wrapper.

    Attributes:
        dtype: the `np.dtype`.

    References: torch.dtype (its str is "torch.float32"); the book's appendix A.2 prints
    `tensor1d.dtype` (torch.int64) and `floatvec.dtype` (torch.float32).
    """

    __slots__ = ("dtype",)
    _instances: dict = {}

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    @classmethod
    def of(cls, dtype) -> "DType":
        """The one DType for a NumPy dtype (made on first use)."""
        found = cls._instances.get(dtype)
        if found is None:
            found = cls._instances[dtype] = cls(dtype)
        return found

    def __eq__(self, other):
        try:
            return self.dtype == np.dtype(other)
        except TypeError:
            return NotImplemented

    def __hash__(self) -> int:
        return hash(self.dtype)

    def __getattr__(self, name: str):
        return getattr(self.dtype, name)  # kind, itemsize, type, name ... of the NumPy dtype

    def __repr__(self) -> str:
        return dtype_name(self.dtype)

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(str(self.dtype), spec)

    def __reduce__(self):
        return (DType.of, (self.dtype,))

    @property
    def is_floating_point(self) -> bool:
        """True for float16/32/64 (torch.dtype.is_floating_point)."""
        return self.dtype.kind == "f"


# --------------------------------------------------------------------------------------------
# The element format: chosen once per tensor, from the values it shows
# --------------------------------------------------------------------------------------------


class _Format:
    """How every element of one tensor prints: notation and width (torch's `_Formatter`).

    Args:
        values: the values that will be shown (a summarised tensor's edges), any shape.
    """

    def __init__(self, values: np.ndarray):
        self.floating = values.dtype.kind == "f"
        self.int_mode, self.sci_mode, self.width = True, False, 1
        precision = _options["precision"]
        if not self.floating:
            texts = [str(value) for value in values.ravel().tolist()]
            self.width = max([self.width] + [len(text) for text in texts])
            return
        shown = values.ravel()
        shown = shown[np.isfinite(shown) & (shown != 0)].astype(np.float64)
        if shown.size == 0:
            return
        magnitudes = np.abs(shown)
        smallest, largest = magnitudes.min(), magnitudes.max()
        self.int_mode = bool(np.all(shown == np.ceil(shown)))
        if _options["sci_mode"] is None:
            self.sci_mode = bool(largest / smallest > 1000.0 or largest > 1.0e8 or smallest < 1.0e-4)
        else:
            self.sci_mode = bool(_options["sci_mode"])
        if self.sci_mode:
            texts = [f"{value:.{precision}e}" for value in shown.tolist()]
        elif self.int_mode:
            texts = [f"{value:.0f}." for value in shown.tolist()]  # the point marks a float tensor
        else:
            texts = [f"{value:.{precision}f}" for value in shown.tolist()]
        self.width = max(len(text) for text in texts)

    def __call__(self, value) -> str:
        """One element (a Python number), right-aligned to the tensor's widest element."""
        if not self.floating:
            text = str(value)
        elif self.sci_mode:
            text = f"{value:.{_options['precision']}e}"
        elif self.int_mode:
            text = f"{value:.0f}" + ("" if math.isinf(value) or math.isnan(value) else ".")
        else:
            text = f"{value:.{_options['precision']}f}"
        return text.rjust(self.width)


def _edges(array: np.ndarray) -> np.ndarray:
    """The values a summarised tensor shows: `edgeitems` at each end of every long dimension."""
    edge = _options["edgeitems"]
    for axis, size in enumerate(array.shape):
        if size > 2 * edge:
            keep = np.r_[0:edge, size - edge:size]
            array = np.take(array, keep, axis=axis)
    return array


# --------------------------------------------------------------------------------------------
# The nested brackets
# --------------------------------------------------------------------------------------------


def _row(values: np.ndarray, indent: int, summarize: bool, fmt: _Format) -> str:
    """A 1-D tensor: elements wrapped at the line width, continuation lines under the first."""
    edge = _options["edgeitems"]
    per_line = max(1, (_options["linewidth"] - indent) // (fmt.width + 2))
    if summarize and not edge:
        items = ["..."]
    elif summarize and values.shape[0] > 2 * edge:
        items = [fmt(v) for v in values[:edge].tolist()] + [" ..."] + [fmt(v) for v in values[-edge:].tolist()]
    else:
        items = [fmt(v) for v in values.tolist()]
    lines = [", ".join(items[start:start + per_line]) for start in range(0, len(items), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _nested(values: np.ndarray, indent: int, summarize: bool, fmt: _Format) -> str:
    """Any tensor of rank >= 1: each sub-tensor one bracket deeper, indented one more column."""
    if values.ndim == 1:
        return _row(values, indent, summarize, fmt)
    edge, count = _options["edgeitems"], values.shape[0]
    if summarize and count > 2 * edge:
        parts = ([_nested(values[i], indent + 1, summarize, fmt) for i in range(edge)] + ["..."]
                 + [_nested(values[i], indent + 1, summarize, fmt) for i in range(count - edge, count)])
    else:
        parts = [_nested(values[i], indent + 1, summarize, fmt) for i in range(count)]
    # Blocks of a rank-n tensor are separated by n - 1 newlines: rows touch, matrices get a blank line.
    return "[" + ("," + "\n" * (values.ndim - 1) + " " * (indent + 1)).join(parts) + "]"


def _values_text(array: np.ndarray, indent: int) -> str:
    """The bracketed values of a non-empty array, as PyTorch prints them after `tensor(`."""
    summarize = array.size > _options["threshold"]
    fmt = _Format(_edges(array) if summarize else array)
    if array.ndim == 0:
        return fmt(array.item())
    return _nested(array, indent, summarize, fmt)


def _with_suffixes(text: str, suffixes: list, indent: int) -> str:
    """Append `, suffix` items and the closing parenthesis, wrapping a suffix that would pass the
    line width onto its own line at `indent` (torch's `_add_suffixes`)."""
    pieces = [text]
    last_line = len(text) - text.rfind("\n") + 1  # as PyTorch counts it (one more than the characters)
    for suffix in suffixes:
        if last_line + len(suffix) + 2 > _options["linewidth"]:
            pieces.append(",\n" + " " * indent + suffix)
            last_line = indent + len(suffix)
        else:
            pieces.append(", " + suffix)
            last_line += len(suffix) + 2
    return "".join(pieces) + ")"


def format_tensor(array: np.ndarray, requires_grad: bool = False, grad_fn_name: str | None = None,
                  prefix: str = "tensor(") -> str:
    """The text PyTorch prints for a CPU tensor holding `array`.

    Args:
        array: the values, any shape, a bool, integer or floating-point dtype.
        requires_grad: whether to add `requires_grad=True` (only when there is no `grad_fn_name`).
        grad_fn_name: PyTorch's name of the op that made the tensor, e.g. "MulBackward0", or None.
        prefix: what opens the text; the values are indented under its end.

    Returns:
        e.g. "tensor([1.0000, 2.5000], grad_fn=<MulBackward0>)".

    References: torch/_tensor_str.py, `_str_intern` (PyTorch 2.13), for a strided CPU tensor.
    """
    indent = len(prefix)
    suffixes = []
    if array.size == 0:
        if array.ndim != 1:
            suffixes.append(f"size={tuple(array.shape)}")
        if array.dtype != np.float32:  # nothing to tell an empty int64 tensor from a float one
            suffixes.append(f"dtype={dtype_name(array.dtype)}")
        text = "[]"
    else:
        if not _options["edgeitems"]:
            suffixes.append(f"size={tuple(array.shape)}")
        if array.dtype not in _DEFAULT_DTYPES:
            suffixes.append(f"dtype={dtype_name(array.dtype)}")
        text = _values_text(array, indent)
    if grad_fn_name is not None:
        suffixes.append(f"grad_fn=<{grad_fn_name}>")
    elif requires_grad:
        suffixes.append("requires_grad=True")
    return _with_suffixes(prefix + text, suffixes, indent)


__all__ = ["set_printoptions", "get_printoptions", "printoptions", "format_tensor", "dtype_name", "DType"]
