"""Hypothesis strategies for property-testing operations built on the engine.

`gradcheck` checks one input; these strategies draw many: shapes (0-d, size-1 and broadcast
dimensions included), float64 arrays whose values stay away from the points where a derivative
jumps or blows up (0 for `abs`, `relu` and `log`; ties for `max`), float64 Tensors, broadcastable
shape tuples and matmul-compatible shape pairs. Everything is kept small (sides of at most 4 by
default) so that a finite-difference check of each drawn example takes milliseconds.

The engine's own test suite uses exactly these strategies. Write yours the same way:

    from hypothesis import given, settings
    from autograd import gradcheck
    from autograd.testing import tensors

    @settings(max_examples=50, deadline=None)
    @given(x=tensors(away_from=0.0))
    def test_my_softsign(x):
        # softsign(x) = x / (1 + |x|): a kink at 0, hence away_from=0.0
        assert gradcheck(lambda x: x / (1 + x.abs()), [x])

This module needs hypothesis (`pip install hypothesis`); it is imported only by tests, never by
the engine itself.

References: minitorch's `tests/strategies.py` (values shifted away from kinks);
hypothesis.extra.numpy (array_shapes, mutually_broadcastable_shapes with gufunc signatures).
"""

from __future__ import annotations

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from autograd.tensor import Tensor

__all__ = [
    "shapes",
    "arrays",
    "positive_arrays",
    "tensors",
    "broadcastable_shapes",
    "matmul_shapes",
    "dims",
    "reduction_dims",
]


def shapes(min_dims: int = 0, max_dims: int = 4, min_side: int = 1, max_side: int = 4) -> st.SearchStrategy:
    """Array shapes, tuples of ints: `()` (a 0-d tensor) up to `max_dims` dimensions.

    Sizes of 1 are drawn often, so broadcasting and squeezing corner cases come up.

    Example:
        >>> shapes(min_dims=1, max_dims=2).example()   # doctest: +SKIP
        (3, 1)
    """
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side)


def _push_away(values: np.ndarray, points, min_distance: float) -> np.ndarray:
    """Move every value closer than `min_distance` to one of `points` out to that distance."""
    for point in points:
        offset = values - point
        near = np.abs(offset) < min_distance
        # Keep the side the value was on (a value exactly at the point goes up).
        direction = np.where(offset < 0, -1.0, 1.0)
        values = np.where(near, point + direction * min_distance, values)
    return values


def _min_gap(values: np.ndarray) -> float:
    flat = np.sort(values.reshape(-1))
    return float(np.min(np.diff(flat))) if flat.size > 1 else np.inf


@st.composite
def arrays(
    draw,
    shape,
    low: float = -3.0,
    high: float = 3.0,
    away_from=None,
    min_distance: float = 0.1,
    distinct: bool = False,
    dtype=np.float64,
) -> np.ndarray:
    """Float arrays of `shape` with finite values in [low, high], optionally kept off kinks and ties.

    Args:
        shape: a shape tuple, or a strategy that draws one (e.g. `shapes()`).
        low, high: the range of the values.
        away_from: a number or a list of numbers where the function under test has a kink or a
            singularity (0 for abs, relu, log, 1/x; the clamp bounds). Values closer than
            `min_distance` to one of them are moved out to exactly that distance (so they may
            lie up to `min_distance` outside [low, high]).
        min_distance: how far values stay from `away_from`, and, with `distinct`, from each other.
            It must be much larger than gradcheck's step `eps` (1e-6): a finite difference that
            straddles a kink measures the average of two slopes.
        distinct: make all values pairwise at least `min_distance / size`-apart (no ties, so
            `max`, `min` and `maximum` have a unique winner).
        dtype: float64 (gradient checks) or float32 (dtype tests).

    Example:
        >>> arrays((2, 3), away_from=0.0).example()   # doctest: +SKIP
        array([[-0.1, 2.5, 0.1], [1.0, -3.0, 0.5]])
    """
    if not isinstance(shape, tuple):
        shape = draw(shape)
    size = int(np.prod(shape))
    if distinct:
        # A random ranking spread over [low, high] with jitter: a gap of at least half a slot.
        ranks = np.array(draw(st.permutations(range(size))), dtype=np.float64)
        jitter = draw(hnp.arrays(np.float64, size, elements=st.floats(-0.25, 0.25)))
        values = low + (high - low) * (ranks + 0.5 + jitter) / max(size, 1)
        values = values.reshape(shape)
    else:
        elements = st.floats(low, high, allow_nan=False, allow_infinity=False)
        values = draw(hnp.arrays(np.float64, shape, elements=elements))
    if away_from is not None:
        points = [away_from] if np.isscalar(away_from) else list(away_from)
        values = _push_away(values, points, min_distance)
    values = np.array(values, dtype=dtype, order="C")  # (ascontiguousarray would make 0-d 1-d)
    if distinct and size > 1:
        # Pushing values off a point could (rarely) land two of them together: draw again then.
        assume(_min_gap(values) >= min(min_distance, (high - low) / 4) / size)
    return values


def positive_arrays(shape, low: float = 0.1, high: float = 3.0, dtype=np.float64) -> st.SearchStrategy:
    """Arrays with values in [low, high], low > 0: the domain of `log`, `sqrt`, `1/x`, `x ** p`.

    `low` keeps the derivative (1/x, 1/(2 sqrt x)) moderate; use a smaller `low` with a smaller
    gradcheck `eps` to probe near the edge of the domain.

    Example:
        >>> positive_arrays((3,)).example()   # doctest: +SKIP
        array([0.1, 2.9, 1.5])
    """
    if low <= 0:
        raise ValueError(f"positive_arrays: low must be > 0, got {low}")
    return arrays(shape, low=low, high=high, dtype=dtype)


@st.composite
def tensors(
    draw,
    shape=None,
    low: float = -3.0,
    high: float = 3.0,
    away_from=None,
    min_distance: float = 0.1,
    distinct: bool = False,
    requires_grad: bool = True,
    dtype=np.float64,
    min_dims: int = 0,
    max_dims: int = 4,
    min_side: int = 1,
    max_side: int = 4,
) -> Tensor:
    """Tensors (float64 by default, requiring grad) of a given or drawn shape.

    Args:
        shape: a shape tuple, a strategy of shapes, or None to draw one with
            `shapes(min_dims, max_dims, min_side, max_side)`.
        low, high, away_from, min_distance, distinct, dtype: as in `arrays`.
        requires_grad: the new leaf's `requires_grad`.

    Example:
        >>> from hypothesis import given
        >>> @given(tensors(shape=(2, 3), away_from=0.0))
        ... def test_abs(x):
        ...     assert gradcheck(lambda x: x.abs(), [x])
    """
    if shape is None:
        shape = shapes(min_dims, max_dims, min_side, max_side)
    values = draw(arrays(shape, low, high, away_from, min_distance, distinct, dtype))
    return Tensor(values, requires_grad=requires_grad)


def broadcastable_shapes(
    num_shapes: int = 2, min_dims: int = 0, max_dims: int = 4, min_side: int = 1, max_side: int = 4
) -> st.SearchStrategy:
    """Tuples of `num_shapes` shapes that broadcast together (different ranks, size-1 dims).

    Example:
        >>> broadcastable_shapes().example()   # doctest: +SKIP
        ((3, 1), (2, 1, 4))
    """
    return hnp.mutually_broadcastable_shapes(
        num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    ).map(lambda drawn: drawn.input_shapes)


def matmul_shapes(max_batch_dims: int = 2, min_side: int = 1, max_side: int = 4) -> st.SearchStrategy:
    """Pairs of shapes `(a_shape, b_shape)` that `a @ b` accepts, with NumPy's matmul rules.

    1-D operands on either side (vector-matrix, matrix-vector, dot product) and batch dimensions
    of different lengths that broadcast (size-1 dims) are all drawn: the gufunc signature
    `(n?,k),(k,m?)->(n?,m?)` describes them.

    Example:
        >>> matmul_shapes().example()   # doctest: +SKIP
        ((2, 1, 3, 4), (4,))
    """
    return hnp.mutually_broadcastable_shapes(
        signature=np.matmul.signature, max_dims=max_batch_dims, min_side=min_side, max_side=max_side
    ).map(lambda drawn: drawn.input_shapes)


def dims(ndim: int) -> st.SearchStrategy:
    """A valid dimension index for an `ndim`-dimensional tensor, negative ones included.

    Example:
        >>> dims(3).example()   # doctest: +SKIP
        -2
    """
    if ndim == 0:
        return st.sampled_from([0, -1])  # a 0-d tensor accepts dim 0 / -1, as PyTorch
    return st.integers(-ndim, ndim - 1)


def reduction_dims(ndim: int) -> st.SearchStrategy:
    """A `dim=` argument for a reduction: None, one int, or a tuple of distinct ints (negatives too).

    Example:
        >>> reduction_dims(3).example()   # doctest: +SKIP
        (0, -1)
    """
    if ndim == 0:
        return st.sampled_from([None, 0, -1])
    axes = st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True)
    signed = axes.flatmap(
        lambda chosen: st.tuples(*[st.sampled_from([d, d - ndim]) for d in chosen])
    )
    return st.one_of(st.none(), dims(ndim), signed)
