"""Property tests of every primitive op in autograd/ops.py.

Each op is checked by `gradcheck` (central differences in float64 against a *random* upstream
gradient) over hypothesis-drawn shapes (0-d, size-1 and broadcast dimensions) and values kept
away from kinks and ties; then identities that must hold exactly, edge cases (repeated indices,
boolean masks, negative dims, empty selections, the edge of log/sqrt's domain), float32 in ->
float32 out for every op and gradient, and the error messages.
"""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import autograd
from autograd import gradcheck, tensor
from autograd.testing import (
    arrays,
    broadcastable_shapes,
    dims,
    matmul_shapes,
    positive_arrays,
    reduction_dims,
    shapes,
    tensors,
)
from support.helpers import leaf




# --------------------------------------------------------------------------------------------
# Binary elementwise ops with broadcasting
# --------------------------------------------------------------------------------------------

BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
}


@pytest.mark.parametrize("name", sorted(BINARY))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_binary_ops_gradcheck_with_broadcasting(name, data):
    shape_a, shape_b = data.draw(broadcastable_shapes())
    a = leaf(data.draw(arrays(shape_a)))
    # Keep divisors away from 0, where 1/b blows up.
    b = leaf(data.draw(arrays(shape_b, away_from=0.0, min_distance=0.5)))
    assert gradcheck(BINARY[name], [a, b])


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_pow_of_two_tensors_gradcheck(data):
    shape_a, shape_b = data.draw(broadcastable_shapes())
    a = leaf(data.draw(positive_arrays(shape_a, low=0.2, high=2.0)))
    b = leaf(data.draw(arrays(shape_b, low=-2.0, high=2.0)))
    assert gradcheck(lambda a, b: a**b, [a, b])


SCALAR_FORMS = {
    "x + c": lambda x, c: x + c,
    "c + x": lambda x, c: c + x,
    "x - c": lambda x, c: x - c,
    "c - x": lambda x, c: c - x,
    "x * c": lambda x, c: x * c,
    "c * x": lambda x, c: c * x,
    "x / c": lambda x, c: x / c,
    "c / x": lambda x, c: c / x,
    "c ** x": lambda x, c: abs(c) ** x,
}


@pytest.mark.parametrize("form", sorted(SCALAR_FORMS))
@settings(max_examples=25, deadline=None)
@given(x=tensors(away_from=0.0, min_distance=0.5), c=st.sampled_from([2.5, -1.5, 3, 0.5]))
def test_python_scalar_on_either_side_gradcheck(form, x, c):
    assert gradcheck(lambda x: SCALAR_FORMS[form](x, c), [x])


@pytest.mark.parametrize("exponent", [2, 3, 0.5, -1, 1.5, -2, 1, 0, 2.0, 4])
@settings(max_examples=25, deadline=None)
@given(x=tensors(low=0.2, high=2.0))
def test_pow_scalar_exponent_gradcheck(exponent, x):
    assert gradcheck(lambda x: x**exponent, [x])


@settings(max_examples=25, deadline=None)
@given(x=tensors(low=-2.0, high=2.0), exponent=st.sampled_from([2, 3, 4, -1, -3]))
def test_integer_powers_of_negative_numbers_gradcheck(x, exponent):
    if exponent < 0:
        x = leaf(np.where(np.abs(x.data) < 0.3, 0.3, x.data))
    assert gradcheck(lambda x: x**exponent, [x])


# --------------------------------------------------------------------------------------------
# Unary elementwise ops
# --------------------------------------------------------------------------------------------

UNARY = {
    "neg": (lambda x: -x, {}),
    "exp": (lambda x: x.exp(), {}),
    "tanh": (lambda x: x.tanh(), {}),
    "abs": (lambda x: x.abs(), {"away_from": 0.0}),
    "relu": (lambda x: x.relu(), {"away_from": 0.0}),
    "log": (lambda x: x.log(), {"low": 0.1}),
    "sqrt": (lambda x: x.sqrt(), {"low": 0.1}),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_unary_ops_gradcheck(name, data):
    fn, options = UNARY[name]
    x = data.draw(tensors(**options))
    assert gradcheck(fn, [x])


@pytest.mark.parametrize("name", ["log", "sqrt"])
@settings(max_examples=25, deadline=None)
@given(values=arrays(shapes(max_dims=2), low=1e-4, high=1e-2))
def test_log_and_sqrt_near_the_edge_of_their_domain(name, values):
    # Derivatives grow like 1/x there: a step much smaller than x keeps the difference accurate.
    x = leaf(values)
    fn = UNARY[name][0]
    assert gradcheck(fn, [x], eps=1e-9, rtol=1e-3, atol=1e-3)


def test_log_and_sqrt_at_and_beyond_the_domain_follow_numpy():
    x = leaf([0.0, -1.0, 4.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        assert np.array_equal(x.log().data, np.log(x.data), equal_nan=True)
        assert np.array_equal(x.sqrt().data, np.sqrt(x.data), equal_nan=True)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_maximum_and_minimum_gradcheck_with_broadcasting(data):
    shape_a, shape_b = data.draw(broadcastable_shapes())
    # a on the half-integers, b on the integers: never a tie, always at least 0.5 apart.
    a = leaf(np.round(data.draw(arrays(shape_a))) + 0.5)
    b = leaf(np.round(data.draw(arrays(shape_b))))
    assert gradcheck(autograd.maximum, [a, b])
    assert gradcheck(autograd.minimum, [a, b])
    assert gradcheck(lambda a, b: a.maximum(b) + a.minimum(b) * 2, [a, b])


@settings(max_examples=25, deadline=None)
@given(x=tensors(away_from=0.0))
def test_maximum_with_a_number_is_relu(x):
    assert gradcheck(lambda x: autograd.maximum(x, 0.0), [x])
    np.testing.assert_array_equal(autograd.maximum(x, 0.0).data, x.relu().data)
    np.testing.assert_array_equal(autograd.minimum(0.0, x).data, np.minimum(x.data, 0.0))


def test_maximum_splits_the_gradient_of_a_tie():
    a, b = leaf([1.0, 2.0, 3.0]), leaf([1.0, 0.0, 5.0])
    autograd.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad, [0.5, 1.0, 0.0])
    np.testing.assert_array_equal(b.grad, [0.5, 0.0, 1.0])


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_clamp_gradcheck(data):
    low, high = data.draw(st.sampled_from([(-1.0, 1.0), (None, 0.5), (-0.5, None), (0.0, 0.0)]))
    bounds = [bound for bound in (low, high) if bound is not None]
    x = data.draw(tensors(away_from=bounds, min_distance=0.1))
    assert gradcheck(lambda x: x.clamp(min=low, max=high), [x])
    expected = np.clip(x.data, low, high)
    np.testing.assert_array_equal(x.clamp(low, high).data, expected)


def test_clamp_passes_the_gradient_only_inside_the_bounds():
    x = leaf([-2.0, -1.0, 0.0, 1.0, 2.0])
    x.clamp(-1.0, 1.0).backward(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    np.testing.assert_array_equal(x.grad, [0.0, 2.0, 3.0, 4.0, 0.0])  # bounds included, as torch
    with pytest.raises(ValueError, match="at least one of min and max"):
        x.clamp()


# --------------------------------------------------------------------------------------------
# Reductions
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@settings(max_examples=40, deadline=None)
@given(data=st.data(), keepdim=st.booleans())
def test_sum_and_mean_gradcheck(reduction, data, keepdim):
    x = data.draw(tensors())
    dim = data.draw(reduction_dims(x.ndim))
    fn = lambda x: getattr(x, reduction)(dim=dim, keepdim=keepdim)  # noqa: E731
    assert gradcheck(fn, [x])
    expected = getattr(np, reduction)(x.data, axis=dim if dim is None or x.ndim else None, keepdims=keepdim)
    if x.ndim or not keepdim:
        np.testing.assert_allclose(fn(x).data, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("unbiased", [True, False])
@settings(max_examples=40, deadline=None)
@given(data=st.data(), keepdim=st.booleans())
def test_var_gradcheck(unbiased, data, keepdim):
    x = data.draw(tensors(min_dims=1))
    dim = data.draw(reduction_dims(x.ndim))
    axes = tuple(range(x.ndim)) if dim is None else np.atleast_1d(dim) % x.ndim
    count = int(np.prod([x.shape[d] for d in axes]))
    assume(count > 1 or not unbiased)  # n - 1 = 0: the unbiased variance is undefined
    fn = lambda x: x.var(dim=dim, unbiased=unbiased, keepdim=keepdim)  # noqa: E731
    assert gradcheck(fn, [x])
    axis = None if dim is None else tuple(int(d) for d in np.atleast_1d(dim))
    expected = np.var(x.data, axis=axis, ddof=int(unbiased), keepdims=keepdim)
    np.testing.assert_allclose(fn(x).data, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", ["max", "min"])
@settings(max_examples=40, deadline=None)
@given(data=st.data(), keepdim=st.booleans())
def test_max_and_min_gradcheck_without_ties(reduction, data, keepdim):
    x = data.draw(tensors(distinct=True))
    assert gradcheck(lambda x: getattr(x, reduction)(), [x])
    dim = data.draw(dims(x.ndim))
    assert gradcheck(lambda x: getattr(x, reduction)(dim=dim, keepdim=keepdim).values, [x])
    values, indices = getattr(x, reduction)(dim=dim, keepdim=keepdim)
    np.testing.assert_array_equal(values.data, getattr(np, reduction)(x.data, axis=dim, keepdims=keepdim))
    expected_indices = getattr(np, "arg" + reduction)(x.data, axis=dim, keepdims=keepdim)
    np.testing.assert_array_equal(indices.data, expected_indices)
    assert indices.dtype == np.int64 and not indices.requires_grad


def test_max_splits_the_gradient_evenly_among_ties():
    x = leaf([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    x.max(dim=1).values.backward(np.array([1.0, 3.0]))
    np.testing.assert_allclose(x.grad, [[0.0, 0.5, 0.5], [1.0, 1.0, 1.0]])
    x.grad = None
    x.min().backward()
    np.testing.assert_allclose(x.grad, [[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])


def test_reductions_over_negative_dims_and_tuples():
    x = leaf(np.arange(24.0).reshape(2, 3, 4))
    np.testing.assert_array_equal(x.sum(dim=-1).data, x.data.sum(axis=2))
    np.testing.assert_array_equal(x.mean(dim=(-1, 0), keepdim=True).data, x.data.mean(axis=(0, 2), keepdims=True))
    np.testing.assert_array_equal(x.max(dim=-2).values.data, x.data.max(axis=1))
    with pytest.raises(IndexError, match="dim=3 is out of range for a tensor with 3 dimensions"):
        x.sum(dim=3)
    with pytest.raises(ValueError, match="names a dimension twice"):
        x.sum(dim=(0, -3))


def test_max_of_an_empty_tensor_raises():
    with pytest.raises(ValueError, match=r"empty tensor \(shape \(0,\)\)"):
        leaf(np.zeros(0)).max()


# --------------------------------------------------------------------------------------------
# Matrix product
# --------------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_matmul_gradcheck_with_batch_broadcasting_and_vectors(data):
    shape_a, shape_b = data.draw(matmul_shapes())
    a, b = leaf(data.draw(arrays(shape_a))), leaf(data.draw(arrays(shape_b)))
    assert gradcheck(lambda a, b: a @ b, [a, b])
    np.testing.assert_allclose((a @ b).data, np.matmul(a.data, b.data), rtol=1e-12)


@pytest.mark.parametrize(
    "shape_a, shape_b",
    [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((2, 4, 3), (3, 5)), ((4, 3), (2, 3, 5)),
     ((3,), (2, 3, 4)), ((2, 1, 4, 3), (3,)), ((2, 1, 3, 4), (5, 4, 2)), ((2, 3, 4), (4, 2))],
)
def test_matmul_gradcheck_on_named_cases(shape_a, shape_b):
    rng = np.random.default_rng(0)
    a, b = leaf(rng.standard_normal(shape_a)), leaf(rng.standard_normal(shape_b))
    assert gradcheck(autograd.matmul, [a, b])
    assert gradcheck(lambda a, b: a.matmul(b), [a, b])


def test_matmul_weight_gradient_only():
    # The (B, T, C) @ (C, K) path with only the weight requiring grad.
    rng = np.random.default_rng(1)
    x = tensor(rng.standard_normal((2, 3, 4)))
    w = leaf(rng.standard_normal((4, 5)))
    assert gradcheck(lambda w: x @ w, [w])


# --------------------------------------------------------------------------------------------
# Shape operations
# --------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_reshape_and_view_gradcheck(data):
    x = data.draw(tensors())
    size = x.numel()
    target = data.draw(st.sampled_from([(-1,), x.shape[::-1], (size, 1), (1,) + x.shape, (1, -1), ()]))
    assume(target != () or size == 1)
    assert gradcheck(lambda x: x.reshape(target), [x])
    assert gradcheck(lambda x: x.view(*target), [x])
    assert x.reshape(target).shape == x.data.reshape(target).shape


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_transpose_permute_and_T_gradcheck(data):
    x = data.draw(tensors(min_dims=1))
    d0, d1 = data.draw(dims(x.ndim)), data.draw(dims(x.ndim))
    assert gradcheck(lambda x: x.transpose(d0, d1), [x])
    np.testing.assert_array_equal(x.transpose(d0, d1).data, np.swapaxes(x.data, d0, d1))
    order = data.draw(st.permutations(range(x.ndim)))
    negative = [d - x.ndim if data.draw(st.booleans()) else d for d in order]
    assert gradcheck(lambda x: x.permute(*negative), [x])
    np.testing.assert_array_equal(x.permute(negative).data, np.transpose(x.data, order))
    assert gradcheck(lambda x: x.T, [x])


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_unsqueeze_and_squeeze_gradcheck(data):
    x = data.draw(tensors())
    dim = data.draw(dims(x.ndim + 1))
    assert gradcheck(lambda x: x.unsqueeze(dim), [x])
    assert x.unsqueeze(dim).shape == np.expand_dims(x.data, dim).shape
    assert gradcheck(lambda x: x.squeeze(), [x])
    assert x.squeeze().shape == np.squeeze(x.data).shape
    squeeze_dim = data.draw(dims(x.ndim))
    assert gradcheck(lambda x: x.squeeze(squeeze_dim), [x])
    expected = np.squeeze(x.data, squeeze_dim).shape if x.ndim and x.shape[squeeze_dim] == 1 else x.shape
    assert x.squeeze(squeeze_dim).shape == expected  # a dim not of size 1 is left alone, as torch


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_expand_gradcheck(data):
    shape_x, shape_other = data.draw(broadcastable_shapes())
    target = np.broadcast_shapes(shape_x, shape_other)
    assume(len(target) >= len(shape_x))
    x = leaf(data.draw(arrays(shape_x)))
    assert gradcheck(lambda x: x.expand(*target), [x])
    lead = len(target) - len(shape_x)
    # -1 keeps a dimension's size: allowed wherever x already has the target size.
    keep = tuple(-1 if i >= lead and shape_x[i - lead] == s and data.draw(st.booleans()) else s for i, s in enumerate(target))
    assert x.expand(keep).shape == target


# --------------------------------------------------------------------------------------------
# Indexing
# --------------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_getitem_basic_indices_gradcheck(data):
    # Slices (with steps), ints (negative too), None and Ellipsis.
    x = data.draw(tensors())
    index = data.draw(hnp.basic_indices(x.shape, allow_newaxis=True, allow_ellipsis=True))
    assert gradcheck(lambda x: x[index], [x])
    np.testing.assert_array_equal(x[index].data, x.data[index])


@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_getitem_integer_arrays_gradcheck(data):
    # Integer arrays may repeat an element: its gradients must add up.
    x = data.draw(tensors(min_dims=1))
    index = data.draw(hnp.integer_array_indices(x.shape, result_shape=shapes(max_dims=2)))
    assert gradcheck(lambda x: x[index], [x])
    np.testing.assert_array_equal(x[index].data, x.data[index])


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_getitem_boolean_masks_gradcheck(data):
    x = data.draw(tensors(min_dims=1))
    full_mask = data.draw(hnp.arrays(np.bool_, x.shape))
    row_mask = data.draw(hnp.arrays(np.bool_, x.shape[:1]))
    assert gradcheck(lambda x: x[full_mask], [x])
    assert gradcheck(lambda x: x[row_mask], [x])
    assert gradcheck(lambda x: x[tensor(full_mask)], [x])  # a bool Tensor works like its array
    np.testing.assert_array_equal(x[full_mask].data, x.data[full_mask])


def test_repeated_integer_indices_accumulate():
    x = leaf([10.0, 20.0, 30.0])
    x[np.array([0, 2, 0, 0])].backward(np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(x.grad, [8.0, 0.0, 2.0])
    y = leaf(np.zeros((2, 3)))
    y[[1, 1], [2, 2]].sum().backward()  # lists work as in NumPy
    np.testing.assert_array_equal(y.grad, [[0, 0, 0], [0, 0, 2]])
    z = leaf(np.zeros((2, 3)))
    z[:, tensor(np.array([0, 0, 1]))].sum().backward()  # an int Tensor index, mixed with a slice
    np.testing.assert_array_equal(z.grad, [[2, 1, 0], [2, 1, 0]])


def test_empty_selections_give_zero_gradients():
    x = leaf(np.arange(6.0).reshape(2, 3))
    for index in (np.array([], dtype=np.int64), np.zeros((2, 3), dtype=bool), slice(2, 2), (slice(None), slice(3, None))):
        x.grad = None
        selected = x[index]
        assert selected.numel() == 0
        (selected.sum() + x.sum() * 0).backward()
        np.testing.assert_array_equal(x.grad, np.zeros((2, 3)))


def test_getitem_with_negative_ints_ellipsis_and_none():
    x = leaf(np.arange(24.0).reshape(2, 3, 4))
    y = x[-1, ..., None, -2]
    assert y.shape == (3, 1)
    y.sum().backward()
    expected = np.zeros((2, 3, 4))
    expected[-1, :, -2] = 1
    np.testing.assert_array_equal(x.grad, expected)


# --------------------------------------------------------------------------------------------
# cat, stack, split, where, masked_fill
# --------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(data=st.data(), count=st.integers(1, 3))
def test_cat_gradcheck(data, count):
    base = data.draw(shapes(min_dims=1, max_dims=3))
    dim = data.draw(dims(len(base)))
    pieces = []
    for _ in range(count):
        shape = list(base)
        shape[dim] = data.draw(st.integers(0, 3))  # empty pieces too
        pieces.append(leaf(data.draw(arrays(tuple(shape)))))
    assert gradcheck(lambda *xs: autograd.cat(list(xs), dim=dim), pieces)
    np.testing.assert_array_equal(autograd.cat(pieces, dim).data, np.concatenate([p.data for p in pieces], axis=dim))


@settings(max_examples=40, deadline=None)
@given(data=st.data(), count=st.integers(1, 3))
def test_stack_gradcheck(data, count):
    shape = data.draw(shapes(max_dims=3))
    dim = data.draw(dims(len(shape) + 1))
    pieces = [leaf(data.draw(arrays(shape))) for _ in range(count)]
    assert gradcheck(lambda *xs: autograd.stack(xs, dim=dim), pieces)
    np.testing.assert_array_equal(autograd.stack(pieces, dim).data, np.stack([p.data for p in pieces], axis=dim))


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_split_gradcheck(data):
    x = data.draw(tensors(min_dims=1))
    dim = data.draw(dims(x.ndim))
    length = x.shape[dim]
    size = data.draw(st.integers(1, length + 1))
    pieces = x.split(size, dim=dim)
    assert [p.shape[dim] for p in pieces] == [len(c) for c in np.array_split(np.arange(length), range(size, length, size))]
    assert gradcheck(lambda x: x.split(size, dim=dim), [x])  # a tuple of outputs
    cut = data.draw(st.integers(0, length))
    sections = [cut, length - cut]
    assert gradcheck(lambda x: x.split(sections, dim), [x])
    with pytest.raises(ValueError, match="add up to"):
        x.split([length + 1], dim)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_where_gradcheck_with_broadcasting(data):
    shape_c, shape_a, shape_b = data.draw(broadcastable_shapes(num_shapes=3))
    condition = data.draw(hnp.arrays(np.bool_, shape_c))
    a, b = leaf(data.draw(arrays(shape_a))), leaf(data.draw(arrays(shape_b)))
    assert gradcheck(lambda a, b: autograd.where(condition, a, b), [a, b])
    np.testing.assert_array_equal(autograd.where(condition, a, b).data, np.where(condition, a.data, b.data))
    assert gradcheck(lambda a: autograd.where(tensor(condition), a, 0.0), [a])  # a number, a bool Tensor


@settings(max_examples=40, deadline=None)
@given(data=st.data(), value=st.sampled_from([0.0, -1e9, -np.inf, 2.5]))
def test_masked_fill_gradcheck(data, value):
    shape_x, shape_mask = data.draw(broadcastable_shapes())
    assume(np.broadcast_shapes(shape_x, shape_mask) == shape_x)
    x = leaf(data.draw(arrays(shape_x)))
    mask = data.draw(hnp.arrays(np.bool_, shape_mask))
    out = x.masked_fill(mask, value)
    np.testing.assert_array_equal(out.data, np.where(mask, value, x.data))
    # A filled position does not depend on x: exactly zero gradient there.
    out.backward(np.ones(x.shape))
    np.testing.assert_array_equal(x.grad, np.broadcast_to(~mask, x.shape).astype(np.float64))
    if abs(value) < 1e3:
        assert gradcheck(lambda x: x.masked_fill(mask, value), [x])
    else:
        # A huge constant in the output swamps the finite difference (1e9 * 1e-16 / 1e-6 = 0.1):
        # zero it again, which keeps the dependence on x that is being checked.
        assert gradcheck(lambda x: x.masked_fill(mask, value).masked_fill(mask, 0.0), [x])


def test_cat_stack_where_masked_fill_errors_name_shapes():
    a, b = leaf(np.zeros((2, 3))), leaf(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"tensor 1 has shape \(2, 4\).*tensor 0's shape \(2, 3\)"):
        autograd.cat([a, b], dim=0)
    assert autograd.cat([a, b], dim=-1).shape == (2, 7)
    with pytest.raises(ValueError, match=r"tensor 1 has shape \(2, 4\), tensor 0 has \(2, 3\)"):
        autograd.stack([a, b])
    with pytest.raises(ValueError, match="empty sequence"):
        autograd.cat([])
    with pytest.raises(TypeError, match="sequence of tensors"):
        autograd.cat(a)
    with pytest.raises(ValueError, match=r"mask of shape \(3,\) does not broadcast to the tensor's shape \(2, 4\)"):
        b.masked_fill(np.zeros(3, dtype=bool), 0.0)
    with pytest.raises(TypeError, match="mask must be bool"):
        a.masked_fill(np.zeros(3), 0.0)
    with pytest.raises(ValueError, match=r"where: shapes \(3,\), \(2, 3\) and \(2, 4\)"):
        autograd.where(np.ones(3, dtype=bool), a, b)
    with pytest.raises(TypeError, match="condition must be bool"):
        autograd.where(np.ones(3), a, a)


# --------------------------------------------------------------------------------------------
# dtype conversion
# --------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(x=tensors())
def test_to_float_double_gradcheck(x):
    # Casting to float32 and back rounds to about 1e-7 relative: a linear function allows a large
    # step, which keeps that rounding far below the tolerance.
    assert gradcheck(lambda x: x.float().double() * 3.0, [x], eps=1e-2, atol=1e-4)
    assert gradcheck(lambda x: x.to(np.float32).to(np.float64), [x], eps=1e-2, atol=1e-4)
    assert x.double() is x  # already float64: no new op, as torch


def test_cast_gradients_come_back_in_the_input_dtype():
    x = tensor(np.array([1.0, 2.0], dtype=np.float32), requires_grad=True)
    y = x.double()
    assert y.dtype == np.float64 and y.grad_fn.name == "Cast"
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])


# --------------------------------------------------------------------------------------------
# Identities
# --------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(x=tensors())
def test_gradient_of_sum_is_ones(x):
    x.sum().backward()
    np.testing.assert_array_equal(x.grad, np.ones(x.shape))
    assert x.grad.shape == x.shape and x.grad.dtype == x.dtype


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_gradient_of_product_is_the_other_factor(data):
    shape = data.draw(shapes())
    a, b = leaf(data.draw(arrays(shape))), leaf(data.draw(arrays(shape)))
    (a * b).sum().backward()
    np.testing.assert_array_equal(a.grad, b.data)
    np.testing.assert_array_equal(b.grad, a.data)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), op=st.sampled_from(sorted(BINARY)))
def test_broadcasting_reduces_each_gradient_to_its_input_shape(data, op):
    shape_a, shape_b = data.draw(broadcastable_shapes())
    a = leaf(data.draw(arrays(shape_a)))
    b = leaf(data.draw(arrays(shape_b, away_from=0.0, min_distance=0.5)))
    out = BINARY[op](a, b)
    out.backward(np.ones(out.shape))
    assert a.grad.shape == shape_a and b.grad.shape == shape_b
    if op == "add":
        # Each element of a was used (output size / a's size) times.
        np.testing.assert_array_equal(a.grad, np.full(shape_a, out.numel() / a.numel()))
        np.testing.assert_array_equal(b.grad, np.full(shape_b, out.numel() / b.numel()))


def test_unbroadcast_sums_new_and_stretched_dimensions():
    grad = np.ones((2, 3, 4))
    np.testing.assert_array_equal(autograd.unbroadcast(grad, (3, 1)), np.full((3, 1), 8.0))
    np.testing.assert_array_equal(autograd.unbroadcast(grad, ()), np.array(24.0))
    assert autograd.unbroadcast(grad, (2, 3, 4)) is grad


def test_derived_expressions_match_numpy():
    x, y = leaf([1.0, -2.0, 3.0]), leaf([0.5, 4.0, -1.0])
    np.testing.assert_allclose(((x - y) * (x + y) / y).data, (x.data**2 - y.data**2) / y.data)
    np.testing.assert_allclose((-x).data, -x.data)
    np.testing.assert_array_equal((x > y).data, x.data > y.data)
    assert not (x > y).requires_grad


# --------------------------------------------------------------------------------------------
# float32 in -> float32 out, for every op and every gradient
# --------------------------------------------------------------------------------------------

FLOAT32_CASES = {
    "add": (lambda a, b: a + b, [(2, 3), (3,)]),
    "sub": (lambda a, b: a - b, [(2, 3), (1, 3)]),
    "mul": (lambda a, b: a * b, [(2, 3), ()]),
    "div": (lambda a, b: a / b, [(2, 3), (2, 1)]),
    "pow": (lambda a, b: a**b, [(2, 3), (3,)]),
    "scalars": (lambda a: (2.5 * a + 1) / 3.0 - 0.5 + 1 / a - 2 ** a + a**1.5 + a**2 + a**0.5 + a**-1, [(2, 3)]),
    "int scalars": (lambda a: (2 * a + 1) / 3 - 1 + a**3 + 2 / a - 3 * a, [(2, 3)]),
    "neg exp log sqrt": (lambda a: (-a).exp() + a.log() + a.sqrt(), [(2, 3)]),
    "tanh abs relu": (lambda a: a.tanh() + a.abs() + a.relu(), [(2, 3)]),
    "maximum minimum": (lambda a, b: autograd.maximum(a, b) + autograd.minimum(a, 0.5), [(2, 3), (3,)]),
    "clamp": (lambda a: a.clamp(0.2, 0.8), [(2, 3)]),
    "sum mean": (lambda a: a.sum(dim=0) + a.mean(dim=0) + a.mean(), [(2, 3)]),
    "var": (lambda a: a.var(dim=1) + a.var(unbiased=False), [(2, 3)]),
    "max min": (lambda a: a.max() + a.min(dim=0).values.sum() + a.max(dim=1).values.sum(), [(2, 3)]),
    "matmul": (lambda a, b: a @ b, [(2, 2, 3), (3, 4)]),
    "matmul vectors": (lambda a, b: a @ b, [(3,), (3,)]),
    "shapes": (lambda a: a.reshape(3, 2).T.permute(1, 0).unsqueeze(0).squeeze(0).transpose(0, 1).expand(2, 2, 3), [(2, 3)]),
    "getitem": (lambda a: a[0, 1:] + a[np.array([1, 1])].sum(0)[1:] + a[a.data > 0.5].sum(), [(2, 3)]),
    "cat stack split": (lambda a, b: autograd.cat([a, b]).sum() + autograd.stack([a, a]).sum() + a.split(1, 1)[0].sum(), [(2, 3), (1, 3)]),
    "where masked_fill": (lambda a, b: autograd.where(a.data > 0.5, a, b) + a.masked_fill(a.data > 0.3, -np.inf).exp(), [(2, 3), (3,)]),
    "cast": (lambda a: a.double().float() + a.to(np.float32), [(2, 3)]),
}


@pytest.mark.parametrize("name", sorted(FLOAT32_CASES))
def test_float32_in_float32_out(name):
    fn, input_shapes = FLOAT32_CASES[name]
    rng = np.random.default_rng(0)
    inputs = [tensor(rng.uniform(0.1, 1.0, shape).astype(np.float32), requires_grad=True) for shape in input_shapes]
    out = fn(*inputs)
    assert out.dtype == np.float32, f"{name}: output dtype {out.dtype}"
    out.backward(rng.standard_normal(out.shape).astype(np.float32))
    for i, x in enumerate(inputs):
        assert x.grad is not None and x.grad.dtype == np.float32, f"{name}: gradient {i} dtype"
        assert np.all(np.isfinite(x.grad))


def test_integer_and_bool_data_never_become_float64():
    ints = tensor([1, 2, 3])
    assert ints.dtype == np.int64
    assert ints.mean().dtype == np.float32  # mean of ints
    assert ints.mean(dim=0).dtype == np.float32
    assert ints.var().dtype == np.float32 and ints.var(unbiased=False).item() == pytest.approx(2 / 3)
    assert (ints * 0.5).dtype == np.float32  # int tensor and a Python float, as torch
    assert (ints / 2).dtype == np.float32  # true division of ints
    assert (ints + 1).dtype == np.int64
    x = tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    for other in (np.array([1, 2, 3]), tensor([1, 2, 3]), np.array([True, False, True])):
        y = x * other
        assert y.dtype == np.float32
        y.sum().backward()
        assert x.grad.dtype == np.float32
        x.grad = None
    assert autograd.where(np.array([True, False, True]), x, np.array([0, 0, 0])).dtype == np.float32


def test_mixed_float_dtypes_promote_and_return_gradients_in_each_dtype():
    # As PyTorch: float32 op float64 gives float64, and each gradient keeps its input's dtype.
    a = tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    b = tensor(np.full(3, 2.0), requires_grad=True)
    for fn in (lambda a, b: a * b, lambda a, b: b - a, lambda a, b: autograd.maximum(a, b), lambda a, b: a @ b):
        a.grad = b.grad = None
        out = fn(a, b)
        assert out.dtype == np.float64
        out.sum().backward()
        assert a.grad.dtype == np.float32 and b.grad.dtype == np.float64


# --------------------------------------------------------------------------------------------
# Errors with useful messages
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_op_with_incompatible_shapes_names_both(op):
    a, b = leaf(np.zeros((2, 3))), leaf(np.zeros((4,)))
    with pytest.raises(ValueError, match=rf"{op}: shapes \(2, 3\) and \(4,\) cannot be broadcast"):
        BINARY[op](a, b)


def test_matmul_errors_name_both_shapes():
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) are not aligned"):
        leaf(np.zeros((2, 3))) @ leaf(np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"matmul: shapes \(3,\) and \(4,\)"):
        leaf(np.zeros(3)) @ leaf(np.zeros(4))
    with pytest.raises(ValueError, match=r"batch dimensions of \(2, 2, 3\) and \(3, 3, 4\)"):
        leaf(np.zeros((2, 2, 3))) @ leaf(np.zeros((3, 3, 4)))
    with pytest.raises(ValueError, match=r"at least 1 dimension, got shapes \(\) and \(3,\)"):
        leaf(np.zeros(())) @ leaf(np.zeros(3))


def test_shape_op_errors():
    x = leaf(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"cannot reshape a tensor of shape \(2, 3\) \(6 elements\) into shape \(4,\)"):
        x.reshape(4)
    with pytest.raises(ValueError, match=r"expand: cannot expand shape \(2, 3\) to \(2, 4\)"):
        x.expand(2, 4)
    with pytest.raises(ValueError, match=r"expand: -1 is not allowed for the new leading dimensions of \(-1, 2, 3\)"):
        x.expand(-1, 2, 3)
    with pytest.raises(ValueError, match="not a permutation"):
        x.permute(0, 0)
    with pytest.raises(ValueError, match="got 1 dims"):
        x.permute(0)
    with pytest.raises(IndexError, match="dim0=2 is out of range"):
        x.transpose(2, 0)
    with pytest.raises(ValueError, match="split_size must be at least 1"):
        x.split(0)
