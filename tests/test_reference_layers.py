"""The reference layers of `autograd/reference/`: gelu, layer_norm, dropout, embedding, linear, attention.

- float64 finite-difference checks (`autograd.gradcheck`: central differences against a random
  upstream gradient, sum(f(x) * dout), never the plain sum) on hypothesis-drawn shapes;
- agreement with the fast kernels, forward and backward: float64 to 1e-12, float32 to 1e-5
  relative (of the largest value); dropout and attention dropout with the same generator draw the
  same mask, element for element;
- the contracts a learner relies on: float32 stays float32, gradients that are not needed are
  None, masked attention positions get exactly zero gradient, a fully masked row gets weights 0.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autograd import Tensor, gradcheck
from autograd.reference.attention import ScaledDotProductAttention
from autograd.reference.dropout import Dropout, dropout_keep_mask
from autograd.reference.embedding import Embedding
from autograd.reference.gelu import Gelu
from autograd.reference.layer_norm import LayerNorm
from autograd.reference.linear import Linear
from autograd.testing import arrays, shapes, tensors

FEW = settings(max_examples=12, deadline=None)


def _fast(module: str, name: str):
    """Today's fast class: autograd/fast/<module>.py, or autograd/functional.py before the move."""
    try:
        return getattr(importlib.import_module(f"autograd.fast.{module}"), name)
    except (ImportError, AttributeError):
        return getattr(importlib.import_module("autograd.functional"), name)


def _run(function, arrays_in, options, dout, requires_grad=None):
    """Forward and backward of `function` on fresh leaves: (out, [grad of each input])."""
    requires_grad = requires_grad or [True] * len(arrays_in)
    leaves = [Tensor(a.copy(), requires_grad=r) for a, r in zip(arrays_in, requires_grad)]
    out = function.apply(*leaves, **options)
    out.backward(dout)
    return out.data, [None if leaf.grad is None else np.asarray(leaf.grad) for leaf in leaves]


def _assert_close(reference, fast, dtype, what):
    """float64 to 1e-12, float32 to 1e-5, relative to the largest magnitude of the fast result."""
    reference, fast = np.asarray(reference), np.asarray(fast)
    assert reference.dtype == fast.dtype == dtype, f"{what}: dtypes {reference.dtype} / {fast.dtype}, expected {dtype}"
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    scale = max(float(np.max(np.abs(fast), initial=0.0)), 1.0)
    worst = float(np.max(np.abs(reference - fast), initial=0.0))
    assert worst <= tolerance * scale, f"{what}: reference and fast differ by {worst:.3g} (allowed {tolerance * scale:.3g})"


def _compare(name, module, arrays_in, options, dtype, seed=0, requires_grad=None):
    """Reference vs fast `name` on `arrays_in` (cast to dtype), forward and backward."""
    reference_class = importlib.import_module(f"autograd.reference.{module}").__dict__[name]
    arrays_in = [a.astype(dtype) for a in arrays_in]
    probe = reference_class.apply(*[Tensor(a) for a in arrays_in], **_fresh(options))
    dout = np.random.default_rng(seed).standard_normal(probe.shape).astype(dtype)
    ref_out, ref_grads = _run(reference_class, arrays_in, _fresh(options), dout, requires_grad)
    fast_out, fast_grads = _run(_fast(module, name), arrays_in, _fresh(options), dout, requires_grad)
    _assert_close(ref_out, fast_out, dtype, f"{name} forward")
    for i, (ref_grad, fast_grad) in enumerate(zip(ref_grads, fast_grads)):
        assert (ref_grad is None) == (fast_grad is None), f"{name}: gradient {i} None in one version only"
        if ref_grad is not None:
            _assert_close(ref_grad, fast_grad, dtype, f"{name} gradient of input {i}")


def _fresh(options):
    """The options with a new generator of the same seed (`rng_seed`), so both versions draw alike."""
    options = dict(options)
    if "rng_seed" in options:
        options["rng"] = np.random.default_rng(options.pop("rng_seed"))
    return options


# ---- finite-difference checks (float64) ---------------------------------------------------------


@FEW
@given(x=tensors(max_dims=3), approximate=st.sampled_from(["tanh", "none"]))
def test_gelu_gradient(x, approximate):
    assert gradcheck(lambda x: Gelu.apply(x, approximate=approximate), [x])


@FEW
@given(data=st.data(), shape=shapes(min_dims=1, max_dims=3), eps=st.sampled_from([1e-5, 1e-2]))
def test_layer_norm_gradient(data, shape, eps):
    # Distinct values: no row with (nearly) zero variance, where 1/sqrt(var + eps) is steep.
    x = Tensor(data.draw(arrays(shape, distinct=True)), requires_grad=True)
    weight = data.draw(tensors(shape=shape[-1:]))
    bias = data.draw(tensors(shape=shape[-1:]))
    assert gradcheck(lambda x, w, b: LayerNorm.apply(x, w, b, eps=eps), [x, weight, bias])


@FEW
@given(x=tensors(max_dims=3), p=st.sampled_from([0.0, 0.3, 0.5, 1.0]), seed=st.integers(0, 2**16))
def test_dropout_gradient(x, p, seed):
    # A new generator of one seed per call: every evaluation draws the same mask.
    assert gradcheck(lambda x: Dropout.apply(x, p=p, rng=np.random.default_rng(seed)), [x])


@FEW
@given(data=st.data(), ids_shape=shapes(min_dims=0, max_dims=2, max_side=5), vocab=st.integers(1, 4),
       channels=st.integers(1, 3))
def test_embedding_gradient_adds_repeated_ids(data, ids_shape, vocab, channels):
    ids = np.asarray(data.draw(arrays(ids_shape, low=0, high=vocab - 1e-9))).astype(np.int64)
    weight = data.draw(tensors(shape=(vocab, channels)))
    assert gradcheck(lambda w: Embedding.apply(w, ids=ids), [weight])
    dout = np.random.default_rng(1).standard_normal(ids.shape + (channels,))
    _, (dweight,) = _run(Embedding, [weight.data], {"ids": ids}, dout)
    expected = np.zeros((vocab, channels))
    for position in np.ndindex(ids.shape):  # the definition, one position at a time
        expected[ids[position]] += dout[position]
    np.testing.assert_allclose(dweight, expected, rtol=1e-12, atol=1e-12)


@FEW
@given(data=st.data(), lead=shapes(min_dims=0, max_dims=2), features=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       with_bias=st.booleans())
def test_linear_gradient(data, lead, features, with_bias):
    n_in, n_out = features
    x = data.draw(tensors(shape=lead + (n_in,)))
    weight = data.draw(tensors(shape=(n_out, n_in)))
    inputs = [x, weight] + ([data.draw(tensors(shape=(n_out,)))] if with_bias else [])
    assert gradcheck(lambda *tensors_in: Linear.apply(*tensors_in), inputs)


@FEW
@given(data=st.data(), batch=shapes(min_dims=0, max_dims=2, max_side=2), queries=st.integers(1, 4),
       keys=st.integers(1, 4), head_size=st.integers(1, 3), causal=st.booleans(),
       dropout_p=st.sampled_from([0.0, 0.4]))
def test_attention_gradient(data, batch, queries, keys, head_size, causal, dropout_p):
    q = data.draw(tensors(shape=batch + (queries, head_size)))
    k = data.draw(tensors(shape=batch + (keys, head_size)))
    v = data.draw(tensors(shape=batch + (keys, head_size)))

    def attention(q, k, v):
        return ScaledDotProductAttention.apply(q, k, v, causal=causal, dropout_p=dropout_p, rng=np.random.default_rng(7))

    assert gradcheck(attention, [q, k, v])


# ---- reference == fast ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(5,), (2, 3, 8), (2, 40, 33)])
def test_gelu_agrees_with_fast(shape, dtype):
    x = np.random.default_rng(0).standard_normal(shape) * 3
    for approximate in ("tanh", "none"):
        _compare("Gelu", "gelu", [x], {"approximate": approximate}, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(1, 4), (2, 3, 8), (2, 40, 64)])
def test_layer_norm_agrees_with_fast(shape, dtype):
    rng = np.random.default_rng(1)
    x, weight, bias = rng.standard_normal(shape) * 2 + 1, rng.standard_normal(shape[-1:]), rng.standard_normal(shape[-1:])
    _compare("LayerNorm", "layer_norm", [x, weight, bias], {"eps": 1e-5}, dtype)
    _compare("LayerNorm", "layer_norm", [x, weight, bias], {"eps": 1e-5}, dtype, requires_grad=[True, False, True])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("p", [0.1, 0.5, 1.0])
def test_dropout_draws_the_same_mask_as_fast(p, dtype):
    x = np.random.default_rng(2).standard_normal((3, 7, 5)).astype(dtype)
    dout = np.random.default_rng(3).standard_normal(x.shape).astype(dtype)
    ref_out, (ref_dx,) = _run(Dropout, [x], {"p": p, "rng": np.random.default_rng(11)}, dout)
    fast_out, (fast_dx,) = _run(_fast("dropout", "Dropout"), [x], {"p": p, "rng": np.random.default_rng(11)}, dout)
    assert ref_out.dtype == ref_dx.dtype == dtype
    np.testing.assert_array_equal(ref_out, fast_out)
    np.testing.assert_array_equal(ref_dx, fast_dx)
    keep, p_drawn = dropout_keep_mask(np.random.default_rng(11), x.shape, p)
    np.testing.assert_array_equal(ref_out != 0, keep & (x != 0))
    assert p_drawn == round(p * 65536) / 65536


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_embedding_agrees_with_fast(dtype):
    ids = np.random.default_rng(4).integers(0, 6, size=(3, 9))  # repeated ids
    weight = np.random.default_rng(5).standard_normal((7, 4))  # id 6 never used: gradient row 0
    _compare("Embedding", "embedding", [weight], {"ids": ids}, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("x_shape", [(6,), (1, 3, 6), (2, 50, 6)])  # 1, 3 and 100 rows
def test_linear_agrees_with_fast(x_shape, dtype):
    rng = np.random.default_rng(6)
    x, weight, bias = rng.standard_normal(x_shape), rng.standard_normal((4, 6)), rng.standard_normal(4)
    _compare("Linear", "linear", [x, weight, bias], {}, dtype)
    _compare("Linear", "linear", [x, weight], {}, dtype)
    _compare("Linear", "linear", [x, weight, bias], {}, dtype, requires_grad=[False, True, True])


ATTENTION_CASES = [
    ((2, 3, 5, 4), 5, True, 0.0),
    ((1, 2, 6, 3), 4, False, 0.0),
    ((2, 2, 7, 4), 7, True, 0.25),
    ((1, 1, 130, 4), 130, True, 0.1),  # more queries than fast's block of 128: the blocked path
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("q_shape, keys, causal, dropout_p", ATTENTION_CASES)
def test_attention_agrees_with_fast(q_shape, keys, causal, dropout_p, dtype):
    rng = np.random.default_rng(8)
    q = rng.standard_normal(q_shape)
    k, v = rng.standard_normal(q_shape[:-2] + (keys, q_shape[-1])), rng.standard_normal(q_shape[:-2] + (keys, q_shape[-1]))
    options = {"causal": causal, "dropout_p": dropout_p, "rng_seed": 12}
    _compare("ScaledDotProductAttention", "attention", [q, k, v], options, dtype)
    _compare("ScaledDotProductAttention", "attention", [q, k, v], options, dtype, requires_grad=[False, True, False])


def test_attention_dropout_uses_the_generator_as_fast_does():
    """Same mask, and the generator advanced by the same number of draws."""
    q = np.random.default_rng(9).standard_normal((2, 2, 6, 3))
    generators = {}
    for version, cls in (("reference", ScaledDotProductAttention), ("fast", _fast("attention", "ScaledDotProductAttention"))):
        rng = np.random.default_rng(13)
        out = cls.apply(Tensor(q), Tensor(q), Tensor(q), causal=True, dropout_p=0.5, rng=rng).data
        generators[version] = (out, rng.bit_generator.random_raw())
    np.testing.assert_allclose(generators["reference"][0], generators["fast"][0], rtol=1e-12, atol=1e-12)
    assert generators["reference"][1] == generators["fast"][1]


# ---- contracts ------------------------------------------------------------------------------------


def test_float32_stays_float32():
    rng = np.random.default_rng(10)
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    w, b = np.ones(4, np.float32), np.zeros(4, np.float32)
    cases = [
        (Gelu, [x], {"approximate": "tanh"}), (Gelu, [x], {"approximate": "none"}),
        (LayerNorm, [x, w, b], {"eps": np.float64(1e-5)}),  # a NumPy float64 eps must not promote
        (Dropout, [x], {"p": 0.5, "rng": np.random.default_rng(0)}),
        (Embedding, [x[0]], {"ids": np.array([[0, 2], [1, 1]])}),
        (Linear, [x, x[0, :2], w[:2]], {}),
        (ScaledDotProductAttention, [x[None], x[None], x[None]],
         {"causal": True, "dropout_p": 0.2, "rng": np.random.default_rng(0)}),
    ]
    for cls, inputs, options in cases:
        probe = cls.apply(*[Tensor(a) for a in inputs], **options)
        dout = np.ones(probe.shape, np.float32)
        out, grads = _run(cls, inputs, {**options, "rng": np.random.default_rng(0)} if "rng" in options else options, dout)
        assert out.dtype == np.float32, f"{cls.__name__} forward gives {out.dtype}"
        assert all(g.dtype == np.float32 for g in grads), f"{cls.__name__} gradients: {[g.dtype for g in grads]}"


def test_gradients_not_needed_are_none():
    """Inputs without requires_grad get None; the others the same values as with every gradient."""
    rng = np.random.default_rng(11)
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal(4), rng.standard_normal(4)
    dout = rng.standard_normal(x.shape)
    cases = [
        (LayerNorm, [x, w, b], {"eps": 1e-5}),
        (Linear, [x, rng.standard_normal((4, 4)), b], {}),
        (ScaledDotProductAttention, [x, x + 1, x - 1], {"causal": True, "dropout_p": 0.3, "rng_seed": 2}),
    ]
    for cls, inputs, options in cases:
        _, all_grads = _run(cls, inputs, _fresh(options), dout)
        for needs in [(True, False, False), (False, True, False), (False, False, True)]:
            _, grads = _run(cls, inputs, _fresh(options), dout, requires_grad=list(needs))
            for need, grad, full in zip(needs, grads, all_grads):
                assert (grad is None) != need, f"{cls.__name__} with requires_grad {needs}"
                if need:
                    np.testing.assert_array_equal(grad, full)


def test_attention_masked_positions_get_exactly_zero_gradient():
    """Query 2 sees keys 0-2 only: from its gradient, keys 3 and 4 get exactly 0."""
    rng = np.random.default_rng(12)
    q, k, v = (rng.standard_normal((2, 2, 5, 3)) for _ in range(3))
    dout = np.zeros(q.shape)
    dout[..., 2, :] = rng.standard_normal((2, 2, 3))
    for dropout_p in (0.0, 0.3):
        options = {"causal": True, "dropout_p": dropout_p, "rng": np.random.default_rng(1)}
        _, (dq, dk, dv) = _run(ScaledDotProductAttention, [q, k, v], options, dout)
        assert np.all(dk[..., 3:, :] == 0) and np.all(dv[..., 3:, :] == 0)
        assert np.all(dq[..., [0, 1, 3, 4], :] == 0)
        assert np.any(dk[..., :3, :] != 0) and np.any(dv[..., :3, :] != 0)


def test_attention_is_causal():
    """Changing later tokens leaves every earlier output exactly unchanged."""
    rng = np.random.default_rng(13)
    q, k, v = (rng.standard_normal((1, 2, 6, 3)) for _ in range(3))
    out = ScaledDotProductAttention.apply(Tensor(q), Tensor(k), Tensor(v), causal=True, dropout_p=0.0, rng=None).data
    k2, v2 = k.copy(), v.copy()
    k2[..., 4:, :] += 10
    v2[..., 4:, :] -= 10
    out2 = ScaledDotProductAttention.apply(Tensor(q), Tensor(k2), Tensor(v2), causal=True, dropout_p=0.0, rng=None).data
    np.testing.assert_array_equal(out[..., :4, :], out2[..., :4, :])


def test_attention_row_with_every_key_masked_gives_weights_zero():
    """A query whose every score is -inf (here q = +inf against negative keys) outputs 0, as fast."""
    q = np.ones((1, 1, 3, 2))
    q[..., 0, :] = np.inf
    k = -np.ones((1, 1, 3, 2))
    v = np.arange(6.0).reshape(1, 1, 3, 2) + 1
    options = {"causal": False, "dropout_p": 0.0, "rng": None}
    with np.errstate(invalid="ignore"):
        out = ScaledDotProductAttention.apply(Tensor(q), Tensor(k), Tensor(v), **options).data
        fast = _fast("attention", "ScaledDotProductAttention").apply(Tensor(q), Tensor(k), Tensor(v), **options).data
    np.testing.assert_array_equal(out[..., 0, :], 0.0)
    np.testing.assert_array_equal(out, fast)
