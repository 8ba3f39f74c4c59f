"""`Size`, the type of `tensor.shape` and `tensor.size()`: a tuple of ints that prints as PyTorch's.

    >>> import autograd as torch
    >>> torch.zeros(2, 6, 3).shape
    torch.Size([2, 6, 3])
    >>> torch.zeros(2, 6, 3).shape[1:], torch.zeros(2, 6, 3).shape.numel()
    (torch.Size([6, 3]), 36)

Everything a tuple does works unchanged (`b, T, C = x.shape`, `x.shape == (2, 6, 3)`,
`np.zeros(x.shape)`); slicing, `+` and `*` give a `Size` again, as in PyTorch.

NOTE: `print(x.shape)`, `str` and `repr` give `torch.Size([2, 6, 3])` as PyTorch does, but an
f-string or `format` gives the tuple, `(2, 6, 3)`: minigpt's error messages (and the tests that
read them) name shapes that way, `f"got shape {x.shape}"`. PyTorch's f-string would print
`torch.Size(...)`; the book's listings print shapes with `print`, never inside an f-string.

References: torch.Size (PyTorch 2.13: `repr` "torch.Size([2, 3])", `numel()`).
"""

from __future__ import annotations

import math


class Size(tuple):
    """A shape: a tuple of non-negative ints, printed `torch.Size([2, 3])` (torch.Size).

    Args:
        sizes: an iterable of ints (default empty: the shape of a 0-d tensor).

    Raises:
        TypeError: an element that is not an int.
    """

    __slots__ = ()

    def __new__(cls, sizes=()):
        sizes = tuple(sizes)
        for size in sizes:
            if isinstance(size, bool) or not hasattr(size, "__index__"):
                raise TypeError(f"Size: each dimension must be an int, got {size!r} of type {type(size).__name__}")
        return super().__new__(cls, [size.__index__() for size in sizes])

    def __repr__(self) -> str:
        return f"torch.Size([{', '.join(str(size) for size in self)}])"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        """The tuple's text, `(2, 3)`, for f-strings and `format` (see the NOTE above)."""
        return format(tuple(self), spec) if spec else repr(tuple(self))

    def __getitem__(self, index):
        item = tuple.__getitem__(self, index)
        return Size(item) if isinstance(index, slice) else item

    def __add__(self, other):
        if not isinstance(other, tuple):
            return NotImplemented
        return Size(tuple(self) + tuple(other))

    def __radd__(self, other):
        if not isinstance(other, tuple):
            return NotImplemented
        return Size(tuple(other) + tuple(self))

    def __mul__(self, count):
        return Size(tuple(self) * count)

    __rmul__ = __mul__

    def numel(self) -> int:
        """The number of elements of a tensor of this shape (the product; 1 for a 0-d shape)."""
        return math.prod(self)

    def __reduce__(self):
        return (Size, (tuple(self),))


__all__ = ["Size"]
