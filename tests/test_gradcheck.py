"""Tests of the checkers themselves: `autograd.gradcheck` and the strategies of `autograd.testing`.

A gradient check that never fails proves nothing, so these tests feed it deliberately wrong
backward rules and check that it fails, naming the input, the element and both values, including
an error in a softmax backward that a check with the plain sum of the outputs cannot see.
"""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autograd import Function, GradcheckError, gradcheck, no_grad, tensor
from autograd import functional as F
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




class WrongSquare(Function):
    """out = a^2 with a wrong backward: 3a instead of 2a."""

    def forward(self, a):
        self.a = a
        return a * a

    def backward(self, dout):
        return dout * 3 * self.a


class SoftmaxWrongBackward(Function):
    """Softmax whose backward subtracts the plain mean of dout instead of sum(dout * p).

    For dout = 1 both give exactly 0, so a check with the plain sum of the outputs passes.
    """

    def forward(self, x):
        exps = np.exp(x - x.max(axis=-1, keepdims=True))
        self.probs = exps / exps.sum(axis=-1, keepdims=True)
        return self.probs

    def backward(self, dout):
        return self.probs * (dout - dout.mean(axis=-1, keepdims=True))


def test_gradcheck_passes_a_correct_op_and_returns_true():
    x = leaf(np.random.default_rng(0).random((3, 4)))
    assert gradcheck(lambda x: (x * x).sum(dim=1), [x]) is True
    assert gradcheck(lambda x: x.exp(), x) is True  # a single Tensor is accepted too


def test_gradcheck_fails_on_a_wrong_backward_naming_input_element_and_values():
    a = leaf([[1.0, 2.0], [3.0, 4.0]])
    b = leaf([0.5, 0.25])
    with pytest.raises(GradcheckError) as error:
        gradcheck(lambda b, a: b * WrongSquare.apply(a), [b, a])
    message = str(error.value)
    assert "input 1 (shape (2, 2))" in message
    element = re.search(r"at element \((\d+), (\d+)\)", message)
    assert element is not None
    i, j = int(element.group(1)), int(element.group(2))
    # Both values are printed: the analytic one is 1.5 times the numeric one for this op.
    analytic = float(re.search(r"analytic gradient (?:np\.float64\()?(-?[\d.e+-]+)", message).group(1))
    numeric = float(re.search(r"numeric \(central difference\) (?:np\.float64\()?(-?[\d.e+-]+)", message).group(1))
    np.testing.assert_allclose(analytic, 1.5 * numeric, rtol=1e-4)
    assert abs(numeric) > 0 and (i, j) in {(r, c) for r in range(2) for c in range(2)}
    assert "4 of 4 checked elements fail" in message
    assert isinstance(error.value, AssertionError)  # pytest shows it like a failed assert


def test_gradcheck_catches_a_softmax_backward_error_that_a_plain_sum_misses():
    x = leaf(np.random.default_rng(0).standard_normal((2, 5)))
    # The blind check: back-propagate the plain sum and compare with its finite difference.
    SoftmaxWrongBackward.apply(x).sum().backward()
    analytic = x.grad
    numeric = np.zeros(x.shape)
    flat, eps = x.data.reshape(-1), 1e-6
    with no_grad():
        for i in range(flat.size):
            flat[i] += eps
            plus = SoftmaxWrongBackward.apply(x).data.sum()
            flat[i] -= 2 * eps
            minus = SoftmaxWrongBackward.apply(x).data.sum()
            flat[i] += eps
            numeric.reshape(-1)[i] = (plus - minus) / (2 * eps)
    # The rows of a softmax always sum to 1: both are ~0, and the plain sum sees nothing wrong.
    np.testing.assert_allclose(analytic, numeric, atol=1e-8)
    x.grad = None
    with pytest.raises(GradcheckError, match="gradcheck failed for input 0"):
        gradcheck(SoftmaxWrongBackward.apply, [x])
    assert gradcheck(lambda x: F.softmax(x, -1), [x])  # the real one passes


def test_gradcheck_catches_a_non_finite_gradient():
    class NanBackward(Function):
        def forward(self, a):
            return a * 1.0

        def backward(self, dout):
            return dout * np.nan

    with pytest.raises(GradcheckError, match="analytic gradient"):
        gradcheck(NanBackward.apply, [leaf([1.0, 2.0])])


def test_gradcheck_input_validation():
    x32 = tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="input 0 has dtype float32; use float64 inputs"):
        gradcheck(lambda x: x * 2, [x32])
    with pytest.raises(ValueError, match="no input has requires_grad=True"):
        gradcheck(lambda x: x * 2, [tensor(np.ones(3))])
    with pytest.raises(TypeError, match="output 0 is ndarray"):
        gradcheck(lambda x: x.data * 2, [leaf([1.0])])
    not_contiguous = tensor(np.ones((3, 4)).T, requires_grad=True)
    with pytest.raises(TypeError, match="input 0 is not contiguous"):
        gradcheck(lambda x: x * 2, [not_contiguous])


def test_gradcheck_handles_empty_inputs_constants_and_tuple_outputs():
    empty = leaf(np.zeros((0, 3)))
    assert gradcheck(lambda x: x * 2, [empty])
    x, constant = leaf([1.0, 2.0, 3.0]), tensor(np.array([4.0, 5.0, 6.0]))
    assert gradcheck(lambda x, c: (x * c, x.exp(), x > 1.5), [x, constant])  # a bool output is skipped
    assert gradcheck(lambda x: x.split(1), [x])


def test_gradcheck_restores_data_and_grad():
    x = leaf([1.0, 2.0])
    x.grad = np.array([7.0, 8.0])
    before = x.data.copy()
    gradcheck(lambda x: x.tanh(), [x])
    np.testing.assert_array_equal(x.data, before)
    np.testing.assert_array_equal(x.grad, [7.0, 8.0])


def test_gradcheck_max_elements_samples_large_inputs():
    x = leaf(np.random.default_rng(0).random(1000))
    calls = []

    def fn(x):
        calls.append(1)
        return x * x

    assert gradcheck(fn, [x], max_elements=10)
    assert len(calls) == 1 + 2 * 10  # one analytic pass, two evaluations per sampled element
    with pytest.raises(GradcheckError, match="of 10 checked elements fail"):
        gradcheck(WrongSquare.apply, [x], max_elements=10)


def test_gradcheck_tolerance_arguments():
    # A slightly wrong derivative passes a loose tolerance and fails a tight one.
    class SlightlyWrong(Function):
        def forward(self, a):
            return 2 * a

        def backward(self, dout):
            return dout * 2.001

    x = leaf([1.0, 2.0])
    assert gradcheck(SlightlyWrong.apply, [x], rtol=1e-2)
    with pytest.raises(GradcheckError, match=r"rtol=0.0001"):
        gradcheck(SlightlyWrong.apply, [x], rtol=1e-4, atol=0.0)


# --------------------------------------------------------------------------------------------
# The strategies of autograd.testing draw what they promise
# --------------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(shape=shapes(min_dims=1, max_dims=3, min_side=2, max_side=3))
def test_shapes_respect_their_bounds(shape):
    assert 1 <= len(shape) <= 3 and all(2 <= side <= 3 for side in shape)


@settings(max_examples=50, deadline=None)
@given(values=arrays(shapes(), away_from=[0.0, 1.0], min_distance=0.2))
def test_arrays_stay_away_from_kinks(values):
    assert values.dtype == np.float64 and values.flags.c_contiguous
    assert np.all(np.abs(values) >= 0.2 - 1e-12) and np.all(np.abs(values - 1.0) >= 0.2 - 1e-12)
    assert np.all(np.isfinite(values)) and np.all(np.abs(values) <= 3.2)


@settings(max_examples=50, deadline=None)
@given(values=arrays(shapes(), distinct=True))
def test_distinct_arrays_have_no_ties(values):
    flat = np.sort(values.reshape(-1))
    assert np.all(np.diff(flat) > 1e-3)


@settings(max_examples=50, deadline=None)
@given(values=positive_arrays((3, 2), low=0.5))
def test_positive_arrays_are_in_the_domain(values):
    assert values.shape == (3, 2) and np.all(values >= 0.5)


def test_positive_arrays_reject_a_non_positive_low():
    with pytest.raises(ValueError, match="low must be > 0"):
        positive_arrays((2,), low=0.0)


@settings(max_examples=50, deadline=None)
@given(x=tensors(shape=(2, 3)), y=tensors(dtype=np.float32, requires_grad=False, max_dims=2))
def test_tensors_have_the_requested_shape_dtype_and_flag(x, y):
    assert x.shape == (2, 3) and x.dtype == np.float64 and x.requires_grad and x.is_leaf
    assert y.dtype == np.float32 and not y.requires_grad and y.ndim <= 2


@settings(max_examples=50, deadline=None)
@given(drawn=broadcastable_shapes(num_shapes=3))
def test_broadcastable_shapes_broadcast(drawn):
    assert len(drawn) == 3
    np.broadcast_shapes(*drawn)


@settings(max_examples=50, deadline=None)
@given(drawn=matmul_shapes())
def test_matmul_shapes_are_accepted_by_matmul(drawn):
    a_shape, b_shape = drawn
    assert len(a_shape) >= 1 and len(b_shape) >= 1
    np.matmul(np.zeros(a_shape), np.zeros(b_shape))


@settings(max_examples=50, deadline=None)
@given(data=st.data(), ndim=st.integers(0, 4))
def test_dims_and_reduction_dims_are_valid(data, ndim):
    dim = data.draw(dims(ndim))
    np.sum(np.zeros((2,) * ndim), axis=dim if ndim else None)
    dim = data.draw(reduction_dims(ndim))
    if ndim:
        np.sum(np.zeros((2,) * ndim), axis=dim)
