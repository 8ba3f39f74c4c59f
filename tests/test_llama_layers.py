"""The fused ops of Llama 3 and Qwen3 (issue 23): rms_norm, silu, apply_rope.

- float64 finite-difference checks (`autograd.gradcheck`: central differences against a random
  upstream gradient) of the reference and the fast version, on hypothesis-drawn shapes;
- reference == fast, forward and backward (float64 to 1e-12, float32 to 1e-5 of the largest value);
- each fused op against the same function built from primitive ops (the book's formulas);
- the arguments' checks.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd
from autograd import Tensor, gradcheck
from autograd import functional as F
from autograd.kernels import get
from autograd.testing import arrays, shapes

FEW = settings(max_examples=15, deadline=None)
TOLERANCE = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}
MODES = ("reference", "fast")


def _run(mode, fn, arrays_in, seed):
    with autograd.kernels(mode):
        leaves = [autograd.tensor(a.copy(), requires_grad=True) for a in arrays_in]
        out = fn(*leaves)
        out.backward(np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype))
    return out.data, [leaf.grad for leaf in leaves]


def assert_modes_agree(fn, arrays_in, seed=0, name="op"):
    expected, expected_grads = _run("reference", fn, arrays_in, seed)
    actual, actual_grads = _run("fast", fn, arrays_in, seed)
    for what, got, want in [("output", actual, expected)] + [
        (f"gradient {i}", g, w) for i, (g, w) in enumerate(zip(actual_grads, expected_grads))
    ]:
        got, want = np.asarray(got), np.asarray(want)
        assert got.shape == want.shape and got.dtype == want.dtype, f"{name} {what}: {got.shape} {got.dtype} vs {want.shape} {want.dtype}"
        tolerance = TOLERANCE[want.dtype]
        scale = max(float(np.max(np.abs(want), initial=0.0)), 1.0)
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance * scale, err_msg=f"{name} {what}")


def _rope_tables(length, head_dim, rng):
    angles = rng.uniform(-3, 3, (length, head_dim // 2))
    angles = np.concatenate([angles, angles], axis=1)
    return np.cos(angles), np.sin(angles)


# ------------------------------------------------------------------------------------------------
# Finite differences in float64, both versions
# ------------------------------------------------------------------------------------------------


@FEW
@given(data=st.data(), shape=shapes(min_dims=1, max_dims=3), eps=st.sampled_from([1e-6, 1e-2]), mode=st.sampled_from(MODES))
def test_rms_norm_gradient(data, shape, eps, mode):
    # Values away from 0: no row with a (nearly) zero mean square, where 1/sqrt(ms + eps) is steep.
    x = Tensor(data.draw(arrays(shape, low=0.5, high=2.0)) * data.draw(st.sampled_from([1, -1])), requires_grad=True)
    weight = Tensor(data.draw(arrays(shape[-1:])), requires_grad=True)
    with autograd.kernels(mode):
        assert gradcheck(lambda x, w: F.rms_norm(x, shape[-1:], w, eps=eps), [x, weight])


@FEW
@given(data=st.data(), shape=shapes(min_dims=0, max_dims=3), mode=st.sampled_from(MODES))
def test_silu_gradient(data, shape, mode):
    x = Tensor(data.draw(arrays(shape, low=-6, high=6)), requires_grad=True)
    with autograd.kernels(mode):
        assert gradcheck(F.silu, [x])


@FEW
@given(data=st.data(), lead=shapes(min_dims=0, max_dims=2), tokens=st.integers(1, 4), half=st.integers(1, 3),
       offset=st.integers(0, 3), mode=st.sampled_from(MODES))
def test_apply_rope_gradient(data, lead, tokens, half, offset, mode):
    x = Tensor(data.draw(arrays(lead + (tokens, 2 * half))), requires_grad=True)
    cos, sin = _rope_tables(tokens + 3, 2 * half, np.random.default_rng(offset))
    with autograd.kernels(mode):
        assert gradcheck(lambda x: F.apply_rope(x, cos, sin, offset=offset), [x])


# ------------------------------------------------------------------------------------------------
# Reference == fast
# ------------------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
def test_rms_norm_silu_rope_agree(data, dtype, seed):
    x = data.draw(arrays(shapes(1, 4, min_side=2), low=-4, high=4, dtype=dtype))
    weight = data.draw(arrays(x.shape[-1:], dtype=dtype))
    assert_modes_agree(lambda t, w: F.rms_norm(t, x.shape[-1], w, eps=1e-5), [x, weight], seed, "rms_norm")
    assert_modes_agree(F.silu, [x], seed, "silu")
    if x.ndim >= 2 and x.shape[-1] % 2 == 0:
        cos, sin = _rope_tables(x.shape[-2] + 2, x.shape[-1], np.random.default_rng(seed))
        assert_modes_agree(lambda t: F.apply_rope(t, cos, sin, offset=2), [x], seed, "apply_rope")


def test_every_new_op_has_both_versions_with_one_forward_signature():
    for name in ("RMSNorm", "Silu", "Rope"):
        with autograd.kernels("reference"):
            reference = get(name)
        with autograd.kernels("fast"):
            fast = get(name)
        assert reference.__module__.startswith("autograd.reference.") and fast.__module__.startswith("autograd.fast."), name
        assert inspect.signature(reference.forward) == inspect.signature(fast.forward), name


def test_silu_saturates_without_overflow_in_float32():
    x = np.array([-1000.0, -90.0, 0.0, 90.0, 1000.0], np.float32)
    for mode in MODES:
        with autograd.kernels(mode), np.errstate(over="raise", invalid="raise"):
            out = F.silu(autograd.tensor(x))
        np.testing.assert_allclose(out.data, np.array([-0.0, -7.37e-38, 0.0, 90.0, 1000.0], np.float32), rtol=1e-6, atol=1e-36)
        assert out.dtype == np.float32


# ------------------------------------------------------------------------------------------------
# The fused ops equal the book's formulas written with primitive ops
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_fused_ops_equal_their_primitive_formulas(mode):
    rng = np.random.default_rng(0)
    x = autograd.tensor(rng.standard_normal((2, 3, 5, 8)), dtype=np.float64)
    weight = autograd.tensor(rng.standard_normal(8), dtype=np.float64)
    with autograd.kernels(mode):
        # The book's Qwen3 RMSNorm: x * rsqrt(mean(x^2) + eps) * scale.
        expected = x / ((x * x).mean(dim=-1, keepdim=True) + 1e-6).sqrt() * weight
        np.testing.assert_allclose(F.rms_norm(x, (8,), weight, 1e-6).data, expected.data, rtol=1e-12)
        np.testing.assert_allclose(F.silu(x).data, (x * x.sigmoid()).data, rtol=1e-12, atol=1e-15)
        cos, sin = _rope_tables(9, 8, rng)
        rotated = autograd.cat([-x[..., 4:], x[..., :4]], dim=-1)
        expected = x * autograd.tensor(cos[3:8]) + rotated * autograd.tensor(sin[3:8])
        np.testing.assert_allclose(F.apply_rope(x, cos, sin, offset=3).data, expected.data, rtol=1e-12, atol=1e-15)
        # Positions per batch row equal the int offset when they are the same.
        positions = np.tile(np.arange(3, 8), (2, 1))
        np.testing.assert_array_equal(F.apply_rope(x, cos, sin, offset=positions).data, F.apply_rope(x, cos, sin, offset=3).data)


def test_rms_norm_over_several_dimensions_and_default_eps():
    x = autograd.tensor(np.random.default_rng(1).standard_normal((3, 2, 4)), dtype=np.float32)
    flat = F.rms_norm(x.reshape(3, 8), 8)
    np.testing.assert_allclose(F.rms_norm(x, (2, 4)).data.reshape(3, 8), flat.data, rtol=1e-6)


def test_bad_arguments_are_named():
    x = autograd.tensor(np.ones((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="normalized_shape"):
        F.rms_norm(x, 3)
    with pytest.raises(ValueError, match="weight must have shape"):
        F.rms_norm(x, 4, autograd.tensor(np.ones(3, np.float32)))
    with pytest.raises(TypeError, match="weight has dtype"):
        F.rms_norm(x, 4, autograd.tensor(np.ones(4)))
    with pytest.raises(ValueError, match="eps"):
        F.rms_norm(x, 4, eps=-1.0)
    with pytest.raises(TypeError, match="float"):
        F.silu(autograd.tensor([1, 2]))
    cos = sin = np.ones((5, 4))
    with pytest.raises(ValueError, match="outside"):
        F.apply_rope(x, cos, sin, offset=3)
    with pytest.raises(ValueError, match="even head_dim"):
        F.apply_rope(autograd.tensor(np.ones((2, 3), np.float32)), cos, sin)
    with pytest.raises(ValueError, match=r"\(context_length, 4\)"):
        F.apply_rope(x, np.ones((5, 6)), np.ones((5, 6)))
    with pytest.raises(ValueError, match="positions must be"):
        F.apply_rope(x, cos, sin, offset=np.arange(2))


# ------------------------------------------------------------------------------------------------
# The torch names the book's Llama 3 / Qwen3 code calls
# ------------------------------------------------------------------------------------------------


@FEW
@given(data=st.data(), shape=shapes(min_dims=1, max_dims=3), repeats=st.integers(1, 3))
def test_cos_sin_rsqrt_pow_and_repeat_interleave_gradients(data, shape, repeats):
    x = Tensor(data.draw(arrays(shape, low=0.5, high=3.0)), requires_grad=True)
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    assert gradcheck(lambda t: autograd.cos(t) * autograd.sin(t) + autograd.rsqrt(t) + t.pow(3), [x])
    assert gradcheck(lambda t: t.repeat_interleave(repeats, dim=dim), [x])
    np.testing.assert_array_equal(x.repeat_interleave(repeats, dim=dim).data, np.repeat(x.data, repeats, axis=dim))


def test_outer_and_boolean_masks():
    a, b = autograd.arange(3.0), autograd.tensor([1.0, 10.0])
    np.testing.assert_array_equal(autograd.outer(a, b).data, np.outer(a.data, b.data))
    low, high = autograd.tensor([1, 5, 9]) > 2, autograd.tensor([1, 5, 9]) < 8
    assert (low & high).tolist() == [False, True, False] and (low | high).tolist() == [True, True, True]
    assert (~low).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="1-D"):
        autograd.outer(autograd.ones(2, 2), b)
    with pytest.raises(ValueError, match="repeats"):
        a.repeat_interleave(0, dim=0)
