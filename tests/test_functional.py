"""Tests of the fused neural-network ops in autograd/functional.py.

Each fused op is checked twice: (a) by `gradcheck` in float64 against a random upstream gradient,
and (b) against the same function composed from primitive ops (same values, same gradients), so
that the hand-derived backward rule and the chain rule through the primitives agree. Then forward
properties (softmax rows sum to 1 and are shift invariant, layer norm gives mean 0 / variance 1,
attention is causal), masking with -inf, stability with large logits, and float32 throughout.
"""

import math
import warnings
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd
from autograd import functional as F
from autograd import gradcheck, tensor
from autograd.fast import attention as fast_attention
from autograd.testing import arrays, dims, shapes, tensors
from support.helpers import leaf




def assert_same_values_and_gradients(fused, composed, inputs, rtol=1e-10, atol=1e-12, seed=0):
    """Run both functions on copies of `inputs` with one random upstream gradient; compare all."""
    results = []
    for fn in (fused, composed):
        copies = [leaf(x.data, x.dtype) if x.requires_grad else x for x in inputs]
        out = fn(*copies)
        dout = np.random.default_rng(seed).standard_normal(out.shape).astype(out.dtype)
        out.backward(dout)
        results.append((out.data, [c.grad for c in copies if c.requires_grad]))
    (fused_out, fused_grads), (composed_out, composed_grads) = results
    np.testing.assert_allclose(fused_out, composed_out, rtol=rtol, atol=atol)
    for fused_grad, composed_grad in zip(fused_grads, composed_grads):
        np.testing.assert_allclose(fused_grad, composed_grad, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------------------------
# softmax and log_softmax
# --------------------------------------------------------------------------------------------


def composed_softmax(x, dim):
    exps = (x - x.max(dim=dim, keepdim=True).values.detach()).exp()
    return exps / exps.sum(dim=dim, keepdim=True)


def composed_log_softmax(x, dim):
    shifted = x - x.max(dim=dim, keepdim=True).values.detach()
    return shifted - shifted.exp().sum(dim=dim, keepdim=True).log()


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_softmax_and_log_softmax_gradcheck_and_match_primitives(name, data):
    x = data.draw(tensors(min_dims=1))
    dim = data.draw(dims(x.ndim))
    fused = getattr(F, name)
    composed = composed_softmax if name == "softmax" else composed_log_softmax
    assert gradcheck(lambda x: fused(x, dim), [x])
    assert_same_values_and_gradients(lambda x: fused(x, dim), lambda x: composed(x, dim), [x])


@settings(max_examples=40, deadline=None)
@given(data=st.data(), shift=st.floats(-50, 50))
def test_softmax_rows_sum_to_one_and_are_shift_invariant(data, shift):
    x = data.draw(tensors(min_dims=1, requires_grad=False))
    dim = data.draw(dims(x.ndim))
    probs = F.softmax(x, dim).data
    assert np.all(probs >= 0)
    np.testing.assert_allclose(probs.sum(axis=dim), 1.0, rtol=1e-12)
    np.testing.assert_allclose(F.softmax(x + shift, dim).data, probs, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(np.exp(F.log_softmax(x, dim).data), probs, rtol=1e-12)
    np.testing.assert_array_equal(x.softmax(dim).data, probs)


def test_softmax_plain_sum_has_zero_gradient():
    # Why gradcheck uses a random upstream gradient: the rows of a softmax always sum to 1.
    x = leaf(np.random.default_rng(0).standard_normal((3, 4)))
    F.softmax(x, -1).sum().backward()
    np.testing.assert_allclose(x.grad, 0.0, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_and_log_softmax_are_stable_for_large_logits(dtype):
    x = leaf([[1000.0, 1001.0, 999.0], [-1000.0, -1001.0, -1002.0]], dtype)
    probs = F.softmax(x, -1)
    log_probs = F.log_softmax(x, -1)
    expected = F.softmax(leaf([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0]]), -1).data
    np.testing.assert_allclose(probs.data, expected, rtol=1e-6)
    np.testing.assert_allclose(log_probs.data, np.log(expected), rtol=1e-6)
    (probs * leaf(np.arange(6.0).reshape(2, 3), dtype)).sum().backward()
    log_probs.backward(np.ones((2, 3), dtype))
    assert np.all(np.isfinite(x.grad))


def test_softmax_with_minus_inf_entries_and_whole_minus_inf_rows():
    x = leaf([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf]])
    dout = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    with np.errstate(all="raise"):  # no invalid operation anywhere
        probs = F.softmax(x, -1)
        probs.backward(dout)
    assert probs.data[0, 1] == 0.0
    np.testing.assert_allclose(probs.data[0, [0, 2]], np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum())
    np.testing.assert_array_equal(probs.data[1], [0.0, 0.0, 0.0])  # all masked: zeros, not NaN
    assert x.grad[0, 1] == 0.0 and np.all(x.grad[1] == 0.0)
    assert np.all(np.isfinite(x.grad))


def test_log_softmax_with_minus_inf_entries_and_whole_minus_inf_rows():
    x = leaf([[0.0, -np.inf, 1.0], [-np.inf, -np.inf, -np.inf]])
    with np.errstate(all="raise"):
        out = F.log_softmax(x, -1)
        out.backward(np.array([[1.0, 0.0, 3.0], [4.0, 5.0, 6.0]]))
    assert not np.any(np.isnan(out.data)) and not np.any(np.isnan(x.grad))
    assert out.data[0, 1] == -np.inf and np.all(out.data[1] == -np.inf)  # log of probability 0
    np.testing.assert_allclose(out.data[0, [0, 2]], np.log(np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()))
    assert x.grad[0, 1] == 0.0 and np.all(x.grad[1] == 0.0)
    # The finite entries still have the right gradient: compare with the row without the -inf.
    finite = leaf([[0.0, 1.0]])
    F.log_softmax(finite, -1).backward(np.array([[1.0, 3.0]]))
    np.testing.assert_allclose(x.grad[0, [0, 2]], finite.grad[0])


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_softmax_gradcheck_with_masked_positions(data):
    x = data.draw(tensors(min_dims=2, max_dims=3))
    mask = np.triu(np.ones(x.shape[-2:], dtype=bool), k=1)  # a causal mask
    fn = lambda x: F.softmax(x.masked_fill(mask, -np.inf), -1)  # noqa: E731
    assert gradcheck(fn, [x])
    assert_same_values_and_gradients(fn, lambda x: composed_softmax(x.masked_fill(mask, -np.inf), -1), [x])


# --------------------------------------------------------------------------------------------
# cross_entropy
# --------------------------------------------------------------------------------------------


def composed_cross_entropy(logits, targets, ignore_index=-100, reduction="mean"):
    """-log_softmax(logits)[target] from primitives, averaged over the counted targets only."""
    classes = logits.shape[-1]
    flat = logits.reshape(-1, classes)
    flat_targets = np.asarray(targets).reshape(-1)
    counted = flat_targets != ignore_index
    rows = np.arange(len(flat_targets))
    losses = -composed_log_softmax(flat, -1)[rows, np.where(counted, flat_targets, 0)]
    losses = losses * counted.astype(logits.dtype)
    if reduction == "none":
        return losses.reshape(np.shape(targets))
    if reduction == "sum":
        return losses.sum()
    return losses.sum() / float(counted.sum())


@st.composite
def logits_and_targets(draw, ignore=True, layout="book"):
    """Logits (N, C) or 3-D, with targets: 3-D logits are the book's (B, T, C) with T != C (the
    only layout where minigpt reads the classes last), or PyTorch's (B, C, T) with any T."""
    batch = draw(st.sampled_from([(), (1,), (2,), (3,)]))
    rows = draw(st.integers(1, 4))
    classes = draw(st.integers(1, 5).filter(lambda c: layout != "book" or not batch or c != rows))
    target_shape = batch + (rows,)
    logits_shape = batch + (classes, rows) if batch and layout == "torch" else target_shape + (classes,)
    logits = leaf(draw(arrays(logits_shape, low=-5, high=5)))
    low = -1 if ignore else 0
    targets = draw(arrays(target_shape, low=low, high=classes - 1).map(lambda a: np.round(a).astype(np.int64)))
    targets = np.where(targets < 0, -100, np.clip(targets, 0, classes - 1))
    return logits, targets


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@settings(max_examples=40, deadline=None)
@given(drawn=logits_and_targets())
def test_cross_entropy_gradcheck_and_matches_primitives(reduction, drawn):
    logits, targets = drawn
    fused = lambda x: F.cross_entropy(x, targets, reduction=reduction)  # noqa: E731
    out = fused(logits)
    if reduction == "mean" and np.all(targets == -100):
        # Nothing counted: the mean of nothing is NaN (as PyTorch), and no gradient flows.
        assert np.isnan(out.item())
        out.backward()
        np.testing.assert_array_equal(logits.grad, 0.0)
        return
    assert out.shape == (targets.shape if reduction == "none" else ())
    assert gradcheck(fused, [logits])
    composed = lambda x: composed_cross_entropy(x, targets, reduction=reduction)  # noqa: E731
    assert_same_values_and_gradients(fused, composed, [logits])


@settings(max_examples=40, deadline=None)
@given(drawn=logits_and_targets(layout="torch"))
def test_cross_entropy_reads_dim_1_as_classes_as_pytorch(drawn):
    """(B, C, T) logits: the same losses and gradients as the book's (B, T, C) after a transpose."""
    logits, targets = drawn
    fused = lambda x: F.cross_entropy(x, targets, reduction="none")  # noqa: E731
    assert gradcheck(fused, [logits])
    classes_last = lambda x: composed_cross_entropy(x.transpose(1, 2) if x.ndim == 3 else x, targets,  # noqa: E731
                                                    reduction="none")
    assert_same_values_and_gradients(fused, classes_last, [logits])


# PyTorch 2.13.0: torch.nn.functional.cross_entropy(torch.arange(32., dtype=torch.float64).reshape(2, 4, 4).sin(),
# torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]])) -> 1.6749434710276425 (C == T == 4: dim 1 holds the classes)
AMBIGUOUS_LOSS = 1.6749434710276425


def test_cross_entropy_with_as_many_classes_as_positions_reads_dim_1_as_pytorch():
    logits = np.sin(np.arange(32.0)).reshape(2, 4, 4)
    targets = np.array([[0, 1, 2, 3], [3, 2, 1, 0]])
    np.testing.assert_allclose(F.cross_entropy(leaf(logits), targets).item(), AMBIGUOUS_LOSS, rtol=1e-12)
    classes_last = F.cross_entropy(leaf(logits.transpose(0, 2, 1).reshape(8, 4)), targets.reshape(8)).item()
    assert classes_last == pytest.approx(AMBIGUOUS_LOSS, rel=1e-12)
    book_reading = F.cross_entropy(leaf(logits.reshape(8, 4)), targets.reshape(8)).item()
    assert abs(book_reading - AMBIGUOUS_LOSS) > 1e-3  # the two readings differ: the test can tell them apart


def test_cross_entropy_names_both_layouts_when_the_targets_fit_neither():
    with pytest.raises(ValueError, match=r"logits of shape \(2, 3, 5\) need targets of shape \(2, 5\) \(logits \(B, C, T\)\) "
                                         r"or \(2, 3\) \(logits \(B, T, C\)\); got targets of shape \(2, 4\)"):
        F.cross_entropy(leaf(np.zeros((2, 3, 5))), np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match=r"logits of shape \(3, 5\) need targets of shape \(3,\); got targets of shape \(5,\)"):
        F.cross_entropy(leaf(np.zeros((3, 5))), np.zeros(5, np.int64))


def test_cross_entropy_ignore_index_and_mean_over_counted_targets_only():
    logits = leaf([[2.0, 0.5, -1.0], [0.0, 0.0, 0.0], [1.0, 3.0, 0.0]])
    targets = np.array([0, -100, 1])
    log_probs = F.log_softmax(leaf(logits.data), -1).data
    expected = -(log_probs[0, 0] + log_probs[2, 1]) / 2  # 2 counted rows, not 3
    loss = F.cross_entropy(logits, targets)
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-12)
    loss.backward()
    np.testing.assert_array_equal(logits.grad[1], 0.0)  # the ignored row gets no gradient
    custom = F.cross_entropy(leaf(logits.data), np.array([0, 7, 1]), ignore_index=7)
    np.testing.assert_allclose(custom.item(), expected, rtol=1e-12)
    none = F.cross_entropy(leaf(logits.data), tensor(targets), reduction="none")  # targets as a Tensor
    assert none.data[1] == 0.0


# PyTorch 2.13.0, torch.nn.functional.cross_entropy on the book's ch. 7.3 example (logits
# [[-1, 1], [-0.5, 1.5]], targets [0, 1]) with a third row [-inf, 1.5] and target -100: 1.1269280910491943
# (the book prints tensor(1.1269)); reduction "sum" 2.2539, "none" [2.1269, 0.1269, 0].
BOOK_IGNORED_ROW_LOSS = 1.1269280910491943


@pytest.mark.parametrize("third_row", [[-np.inf, 1.5], [np.nan, np.inf], [np.inf, np.inf], [np.nan, np.nan], [-np.inf, -np.inf]])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_ignores_inf_and_nan_in_ignored_rows(third_row, dtype):
    """An ignored row touches neither the loss nor the other rows' gradients; its own gradient is 0."""
    counted = np.array([[-1.0, 1.0], [-0.5, 1.5]])
    targets = np.array([0, 1, -100])
    reference = leaf(counted.astype(dtype), dtype)
    F.cross_entropy(reference, targets[:2]).backward()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from the ignored row's arithmetic
        for reduction, expected in (("mean", BOOK_IGNORED_ROW_LOSS), ("sum", 2 * BOOK_IGNORED_ROW_LOSS)):
            logits = leaf(np.array([*counted, third_row], dtype=dtype), dtype)
            loss = F.cross_entropy(logits, targets, reduction=reduction)
            np.testing.assert_allclose(loss.item(), expected, rtol=1e-6)
            loss.backward()
            np.testing.assert_array_equal(logits.grad[2], 0.0)
            np.testing.assert_allclose(logits.grad[:2], reference.grad * (2 if reduction == "sum" else 1), rtol=1e-6)
        none = F.cross_entropy(leaf(np.array([*counted, third_row], dtype=dtype), dtype), targets, reduction="none")
    np.testing.assert_allclose(none.data, [2.1269280910491943, 0.1269280910491943, 0.0], rtol=1e-6)


def test_cross_entropy_3d_logits_equal_flattened():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 3, 5))
    targets = rng.integers(0, 5, size=(2, 3))
    a, b = leaf(logits), leaf(logits.reshape(6, 5))
    F.cross_entropy(a, targets).backward()
    F.cross_entropy(b, targets.reshape(6)).backward()
    np.testing.assert_allclose(a.grad.reshape(6, 5), b.grad, rtol=1e-12)
    assert F.cross_entropy(leaf(logits), targets, reduction="none").shape == (2, 3)


def test_cross_entropy_backward_with_a_non_unit_upstream_and_twice_with_retain_graph():
    rng = np.random.default_rng(1)
    logits = leaf(rng.standard_normal((4, 3)))
    targets = np.array([0, 1, 2, 1])
    loss = F.cross_entropy(logits, targets)
    (loss * 3.0).backward(retain_graph=True)
    first = logits.grad.copy()
    loss.backward()  # dout == 1: the saved, read-only gradient is handed on
    np.testing.assert_allclose(logits.grad, first * 4 / 3, rtol=1e-12)
    logits.grad += 1.0  # the leaf owns its gradient: it can be changed in place
    assert gradcheck(lambda x: F.cross_entropy(x, targets) * 2.5, [logits])


def test_cross_entropy_is_stable_for_large_logits():
    logits = leaf(np.array([[1000.0, 0.0], [-1000.0, 1000.0]], dtype=np.float32), np.float32)
    loss = F.cross_entropy(logits, np.array([0, 1]))
    assert loss.dtype == np.float32 and loss.item() == 0.0
    loss.backward()
    assert np.all(np.isfinite(logits.grad))


def test_cross_entropy_errors():
    logits = leaf(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"logits of shape \(2, 3\) need targets of shape \(2,\).*got targets of shape \(3,\)"):
        F.cross_entropy(logits, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"target 3 is outside \[0, 3\) and is not ignore_index \(-100\)"):
        F.cross_entropy(logits, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"target -1 is outside"):
        F.cross_entropy(logits, np.array([-1, 0]))
    with pytest.raises(TypeError, match="targets must be integer class indices, got dtype float64"):
        F.cross_entropy(logits, np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'max'"):
        F.cross_entropy(logits, np.array([0, 1]), reduction="max")


# --------------------------------------------------------------------------------------------
# gelu
# --------------------------------------------------------------------------------------------


def composed_gelu_tanh(x):
    return 0.5 * x * (1 + (math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)).tanh())


@pytest.mark.parametrize("approximate", ["tanh", "none"])
@settings(max_examples=40, deadline=None)
@given(x=tensors(low=-4, high=4))
def test_gelu_gradcheck(approximate, x):
    assert gradcheck(lambda x: F.gelu(x, approximate=approximate), [x])


@settings(max_examples=25, deadline=None)
@given(x=tensors(low=-4, high=4))
def test_gelu_matches_primitives_and_the_exact_formula(x):
    assert_same_values_and_gradients(F.gelu, composed_gelu_tanh, [x])
    exact = np.vectorize(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))), otypes=[np.float64])(x.data)
    np.testing.assert_allclose(F.gelu(x, approximate="none").data, exact, rtol=1e-12, atol=1e-15)
    # The tanh approximation is within 1e-3 of the exact function (Hendrycks & Gimpel 2016).
    np.testing.assert_allclose(F.gelu(x).data, exact, atol=1e-3)


def test_gelu_rejects_an_unknown_approximation():
    with pytest.raises(ValueError, match="approximate must be 'tanh' or 'none', got 'erf'"):
        F.gelu(leaf([1.0]), approximate="erf")


# --------------------------------------------------------------------------------------------
# layer_norm
# --------------------------------------------------------------------------------------------


def composed_layer_norm(x, weight=None, bias=None, eps=1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, unbiased=False, keepdim=True)
    out = (x - mean) / (var + eps).sqrt()
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


@pytest.mark.parametrize("affine", ["none", "weight", "bias", "both"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_layer_norm_gradcheck_and_matches_primitives(affine, data):
    x = data.draw(tensors(min_dims=1, min_side=2))
    channels = x.shape[-1]
    weight = leaf(data.draw(arrays((channels,)))) if affine in ("weight", "both") else None
    bias = leaf(data.draw(arrays((channels,)))) if affine in ("bias", "both") else None
    params = [p for p in (weight, bias) if p is not None]

    def fused(x, *params):
        p = iter(params)
        return F.layer_norm(x, next(p) if weight is not None else None, next(p) if bias is not None else None)

    def composed(x, *params):
        p = iter(params)
        return composed_layer_norm(x, next(p) if weight is not None else None, next(p) if bias is not None else None)

    assert gradcheck(fused, [x, *params], atol=1e-4)
    assert_same_values_and_gradients(fused, composed, [x, *params], rtol=1e-7, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(x=tensors(min_dims=1, min_side=2, requires_grad=False, low=-100, high=100))
def test_layer_norm_rows_have_mean_zero_and_variance_one(x):
    rows = x.data.reshape(-1, x.shape[-1])
    spread = rows.std(axis=-1)
    out = F.layer_norm(x, eps=1e-12).data.reshape(rows.shape)
    # A (nearly) constant row has no scale to normalise: eps dominates and rounding is amplified.
    wide = spread > 1e-3
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out[wide].mean(axis=-1), 0.0, atol=1e-9)
    np.testing.assert_allclose(out[wide].var(axis=-1), 1.0, rtol=1e-6)


def test_layer_norm_weight_and_bias_shift_and_scale_and_errors():
    x = leaf(np.random.default_rng(0).standard_normal((2, 3, 4)))
    weight, bias = leaf([1.0, 2.0, 3.0, 4.0]), leaf([0.5, 0.0, -0.5, 1.0])
    plain = F.layer_norm(x).data
    np.testing.assert_allclose(F.layer_norm(x, weight, bias).data, plain * weight.data + bias.data)
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\) for x of shape \(2, 3, 4\), got \(3,\)"):
        F.layer_norm(x, leaf([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        F.layer_norm(x, weight, leaf(np.zeros((1, 4))))


# --------------------------------------------------------------------------------------------
# dropout
# --------------------------------------------------------------------------------------------


def test_dropout_is_the_identity_in_eval_mode_or_with_p_zero():
    x = leaf(np.arange(6.0).reshape(2, 3))
    for out in (F.dropout(x, 0.5, training=False), F.dropout(x, 0.0, rng=np.random.default_rng(0)), F.dropout(x, 0.0)):
        np.testing.assert_array_equal(out.data, x.data)
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    F.dropout(x, 0.5, training=False, rng=rng)
    assert rng.bit_generator.state == state  # no random number drawn


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_mask_statistics_and_scaling(p):
    x = leaf(np.ones((200, 500)))
    out = F.dropout(x, p, rng=np.random.default_rng(0))
    kept = out.data != 0
    n = kept.size
    assert abs((1 - kept.mean()) - p) < 5 * math.sqrt(p * (1 - p) / n)  # within 5 standard errors
    # Inverted dropout; p is drawn with 16-bit resolution, and the scale uses that drawn p.
    p_drawn = round(p * 65536) / 65536
    assert abs(p_drawn - p) <= 0.5 / 65536
    np.testing.assert_allclose(out.data[kept], 1 / (1 - p_drawn), rtol=1e-12)
    assert abs(out.data.mean() - 1.0) < 0.02  # the expected value is unchanged
    out.backward(np.full(x.shape, 2.0))
    np.testing.assert_allclose(x.grad, np.where(kept, 2 / (1 - p_drawn), 0.0), rtol=1e-12)  # same mask backward


def test_dropout_is_deterministic_given_the_generator_and_p_one_zeroes_everything():
    x = leaf(np.ones((4, 8)))
    a = F.dropout(x, 0.3, rng=np.random.default_rng(42)).data
    b = F.dropout(x, 0.3, rng=np.random.default_rng(42)).data
    c = F.dropout(x, 0.3, rng=np.random.default_rng(43)).data
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    out = F.dropout(x, 1.0, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out.data, 0.0)
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, 0.0)
    assert not np.any(np.isnan(x.grad))


@settings(max_examples=25, deadline=None)
@given(x=tensors(), p=st.sampled_from([0.2, 0.5]), seed=st.integers(0, 100))
def test_dropout_gradcheck_with_a_seeded_generator(x, p, seed):
    # A fresh generator with the same seed per call: the same mask for every finite difference.
    assert gradcheck(lambda x: F.dropout(x, p, rng=np.random.default_rng(seed)), [x])


def test_dropout_errors():
    x = leaf([1.0, 2.0])
    with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\], got 1.5"):
        F.dropout(x, 1.5, rng=np.random.default_rng(0))


def test_dropout_without_rng_draws_from_the_default_generator():
    x = leaf(np.ones(64))
    autograd.manual_seed(5)
    first = F.dropout(x, 0.5).data
    autograd.manual_seed(5)
    np.testing.assert_array_equal(F.dropout(x, 0.5).data, first)
    # The same draws as an explicit generator seeded alike: the default one is an ordinary Generator.
    np.testing.assert_array_equal(F.dropout(x, 0.5, rng=autograd.Generator().manual_seed(5)).data, first)


# --------------------------------------------------------------------------------------------
# embedding and linear
# --------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_embedding_gradcheck_with_repeated_ids_and_matches_indexing(data):
    vocab, channels = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 4))
    weight = leaf(data.draw(arrays((vocab, channels))))
    id_shape = data.draw(shapes(max_dims=2, min_side=0))
    ids = np.asarray(data.draw(st.lists(st.integers(0, vocab - 1), min_size=int(np.prod(id_shape)), max_size=int(np.prod(id_shape)))), dtype=np.int64).reshape(id_shape)
    out = F.embedding(ids, weight)
    assert out.shape == id_shape + (channels,)
    assert gradcheck(lambda w: F.embedding(ids, w), [weight])
    assert_same_values_and_gradients(lambda w: F.embedding(ids, w), lambda w: w[ids], [weight])


def test_embedding_repeated_ids_add_up():
    weight = leaf(np.zeros((4, 2)))
    ids = np.array([[1, 3, 1], [1, 0, 3]])
    F.embedding(tensor(ids), weight).backward(np.ones((2, 3, 2)))
    np.testing.assert_array_equal(weight.grad, [[1, 1], [3, 3], [0, 0], [2, 2]])


def test_embedding_errors():
    weight = leaf(np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"id 4 is outside the table's range \[0, 4\)"):
        F.embedding(np.array([0, 4]), weight)
    with pytest.raises(ValueError, match=r"id -1 is outside"):
        F.embedding(np.array([-1]), weight)
    with pytest.raises(TypeError, match="ids must be integers, got dtype float64"):
        F.embedding(np.array([0.0]), weight)


@pytest.mark.parametrize("with_bias", [True, False])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_linear_gradcheck_and_matches_primitives(with_bias, data):
    in_features, out_features = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    batch = data.draw(shapes(max_dims=2))
    x = leaf(data.draw(arrays(batch + (in_features,))))
    weight = leaf(data.draw(arrays((out_features, in_features))))
    bias = leaf(data.draw(arrays((out_features,))))
    inputs = [x, weight, bias] if with_bias else [x, weight]
    fused = lambda x, w, b=None: F.linear(x, w, b)  # noqa: E731
    composed = lambda x, w, b=None: x @ w.T + b if b is not None else x @ w.T  # noqa: E731
    assert gradcheck(fused, inputs)
    assert_same_values_and_gradients(fused, composed, inputs)
    assert fused(*inputs).shape == batch + (out_features,)


def test_linear_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"x of shape \(2, 3\).*weight has shape \(4, 5\)"):
        F.linear(leaf(np.zeros((2, 3))), leaf(np.zeros((4, 5))))
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\), got \(3,\)"):
        F.linear(leaf(np.zeros((2, 3))), leaf(np.zeros((4, 3))), leaf(np.zeros(3)))


# --------------------------------------------------------------------------------------------
# scaled_dot_product_attention
# --------------------------------------------------------------------------------------------


def composed_attention(q, k, v, causal=True, dropout_p=0.0, seed=0):
    """softmax(mask(q k^T / sqrt(D))) v from matmul, masked_fill, softmax and dropout."""
    scores = q @ k.transpose(-2, -1) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        future = np.triu(np.ones(scores.shape[-2:], dtype=bool), k=1)
        scores = scores.masked_fill(future, -np.inf)
    weights = F.softmax(scores, -1)
    if dropout_p:
        weights = F.dropout(weights, dropout_p, rng=np.random.default_rng(seed))
    return weights @ v


@st.composite
def attention_inputs(draw, same_length=True):
    batch = draw(shapes(max_dims=2, max_side=2))
    t_query = draw(st.integers(1, 4))
    t_key = t_query if same_length else draw(st.integers(1, 4))
    head = draw(st.integers(1, 3))
    q = leaf(draw(arrays(batch + (t_query, head))))
    k = leaf(draw(arrays(batch + (t_key, head))))
    v = leaf(draw(arrays(batch + (t_key, head))))
    return q, k, v


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("dropout_p", [0.0, 0.3])
@settings(max_examples=30, deadline=None)
@given(qkv=attention_inputs(same_length=False), seed=st.integers(0, 100))
def test_attention_gradcheck_and_matches_primitives(causal, dropout_p, qkv, seed):
    def fused(q, k, v):
        rng = np.random.default_rng(seed) if dropout_p else None
        return F.scaled_dot_product_attention(q, k, v, causal=causal, dropout_p=dropout_p, rng=rng)

    assert gradcheck(fused, list(qkv))
    composed = lambda q, k, v: composed_attention(q, k, v, causal, dropout_p, seed)  # noqa: E731
    assert_same_values_and_gradients(fused, composed, list(qkv), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dropout_p", [0.0, 0.3])
@settings(max_examples=30, deadline=None)
@given(qkv=attention_inputs(same_length=False), query_block=st.integers(1, 3), seed=st.integers(0, 100))
def test_causal_attention_in_query_blocks_matches_primitives(dropout_p, qkv, query_block, seed):
    """Causal attention skips the masked keys block by block; small blocks exercise that path here."""
    def fused(q, k, v):
        rng = np.random.default_rng(seed) if dropout_p else None
        return F.scaled_dot_product_attention(q, k, v, causal=True, dropout_p=dropout_p, rng=rng)

    with mock.patch.object(fast_attention, "_QUERY_BLOCK", query_block), autograd.kernels("fast"):
        assert gradcheck(fused, list(qkv))
        composed = lambda q, k, v: composed_attention(q, k, v, True, dropout_p, seed)  # noqa: E731
        assert_same_values_and_gradients(fused, composed, list(qkv), rtol=1e-9, atol=1e-12)


def test_query_blocks_cover_the_queries_and_see_only_earlier_keys():
    with mock.patch.object(fast_attention, "_QUERY_BLOCK", 128):
        assert fast_attention._query_blocks(256, 256, True) == [(0, 128, 128), (128, 256, 256)]
        assert fast_attention._query_blocks(300, 200, True) == [(0, 128, 128), (128, 256, 200), (256, 300, 200)]
        assert fast_attention._query_blocks(256, 256, False) == [(0, 256, 256)]
        assert fast_attention._query_blocks(100, 100, True) == [(0, 100, 100)]


@settings(max_examples=30, deadline=None)
@given(qkv=attention_inputs(), data=st.data())
def test_attention_is_causal(qkv, data):
    q, k, v = qkv
    t = data.draw(st.integers(0, q.shape[-2] - 1))  # change tokens after position t
    out = F.scaled_dot_product_attention(q, k, v, causal=True).data
    changed = [x.data.copy() for x in qkv]
    for array in changed:
        array[..., t + 1:, :] += data.draw(st.floats(1, 10))
    out_changed = F.scaled_dot_product_attention(*[tensor(a) for a in changed], causal=True).data
    np.testing.assert_allclose(out[..., : t + 1, :], out_changed[..., : t + 1, :], rtol=1e-12, atol=1e-12)
    # The gradient of output t reaches no key or value after t.
    q, k, v = [leaf(x.data) for x in qkv]
    out = F.scaled_dot_product_attention(q, k, v, causal=True)
    dout = np.zeros(out.shape)
    dout[..., t, :] = 1.0
    out.backward(dout)
    assert np.all(k.grad[..., t + 1:, :] == 0) and np.all(v.grad[..., t + 1:, :] == 0)


def test_attention_rows_are_weighted_averages_of_values():
    # With identical keys every allowed position gets the same weight: the causal average.
    v = leaf(np.arange(8.0).reshape(1, 4, 2))
    q = k = tensor(np.zeros((1, 4, 2)))
    out = F.scaled_dot_product_attention(q, k, v, causal=True).data
    expected = np.cumsum(v.data, axis=1) / np.arange(1, 5)[None, :, None]
    np.testing.assert_allclose(out, expected)


def test_attention_errors():
    q = leaf(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match=r"q \(2, 3, 4\), k \(2, 3, 5\), v \(2, 3, 5\)"):
        F.scaled_dot_product_attention(q, leaf(np.zeros((2, 3, 5))), leaf(np.zeros((2, 3, 5))))
    # No rng: the default generator draws the mask, reproducibly under manual_seed.
    values = leaf(np.random.default_rng(0).standard_normal((2, 3, 4)))
    autograd.manual_seed(3)
    first = F.scaled_dot_product_attention(values, values, values, dropout_p=0.5).data
    autograd.manual_seed(3)
    np.testing.assert_array_equal(F.scaled_dot_product_attention(values, values, values, dropout_p=0.5).data, first)
    assert not np.array_equal(first, F.scaled_dot_product_attention(values, values, values).data)
    with pytest.raises(ValueError, match=r"dropout_p must be a probability in \[0, 1\], got -0.1"):
        F.scaled_dot_product_attention(q, q, q, dropout_p=-0.1)
    no_keys = leaf(np.zeros((2, 0, 4)))
    with pytest.raises(ValueError, match=r"need at least one token to attend to, got k of shape \(2, 0, 4\)"):
        F.scaled_dot_product_attention(q, no_keys, no_keys)
    # No queries is fine: an empty output and empty gradients.
    no_queries = leaf(np.zeros((2, 0, 4)))
    out = F.scaled_dot_product_attention(no_queries, q, q)
    out.sum().backward()
    assert out.shape == (2, 0, 4) and q.grad.shape == (2, 3, 4) and not q.grad.any()


# --------------------------------------------------------------------------------------------
# float32 in -> float32 out
# --------------------------------------------------------------------------------------------

FUNCTIONAL_FLOAT32 = {
    "softmax": (lambda x: F.softmax(x, -1), [(2, 3, 4)]),
    "log_softmax": (lambda x: F.log_softmax(x.masked_fill(np.eye(4, dtype=bool)[:3], -np.inf), 0), [(3, 4)]),
    "cross_entropy mean": (lambda x: F.cross_entropy(x, np.array([[0, 3, -100]])), [(1, 3, 4)]),
    "cross_entropy none": (lambda x: F.cross_entropy(x, np.array([0, 3, 1]), reduction="none") * 2, [(3, 4)]),
    "cross_entropy sum": (lambda x: F.cross_entropy(x, np.array([0, 3, 1]), reduction="sum") * 0.5, [(3, 4)]),
    "gelu tanh": (lambda x: F.gelu(x), [(2, 3)]),
    "gelu none": (lambda x: F.gelu(x, approximate="none"), [(2, 3)]),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, w, b) + F.layer_norm(x), [(2, 3, 4), (4,), (4,)]),
    "dropout": (lambda x: F.dropout(x, 0.5, rng=np.random.default_rng(0)), [(4, 5)]),
    "embedding": (lambda w: F.embedding(np.array([[0, 2, 2]]), w), [(3, 4)]),
    "linear": (lambda x, w, b: F.linear(x, w, b) + F.linear(x, w), [(2, 3, 4), (5, 4), (5,)]),
    "attention": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=0.2, rng=np.random.default_rng(0)), [(2, 2, 3, 4)] * 3),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONAL_FLOAT32))
def test_functional_float32_in_float32_out(name):
    fn, input_shapes = FUNCTIONAL_FLOAT32[name]
    rng = np.random.default_rng(0)
    inputs = [tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True) for shape in input_shapes]
    out = fn(*inputs)
    assert out.dtype == np.float32
    out.backward(rng.standard_normal(out.shape).astype(np.float32))
    for x in inputs:
        assert x.grad.dtype == np.float32 and np.all(np.isfinite(x.grad))


# --------------------------------------------------------------------------------------------
# Degenerate and mismatched inputs get errors that name the argument
# --------------------------------------------------------------------------------------------


def test_layer_norm_rejects_inputs_without_channels_or_with_mixed_dtypes():
    with pytest.raises(ValueError, match=r"at least one channel, got shape \(\)"):
        F.layer_norm(tensor(np.float32(1.0)))
    with pytest.raises(ValueError, match=r"at least one channel, got shape \(2, 0\)"):
        F.layer_norm(tensor(np.zeros((2, 0), np.float32)))
    with pytest.raises(TypeError, match="x must be a float tensor, got dtype int64"):
        F.layer_norm(tensor(np.zeros((2, 3), np.int64)))
    x = leaf(np.ones((2, 3)), dtype=np.float32)
    with pytest.raises(TypeError, match="weight has dtype float64 but x has float32"):
        F.layer_norm(x, leaf(np.ones(3)), leaf(np.zeros(3), dtype=np.float32))


def test_attention_rejects_bad_causal_dtypes_and_empty_heads():
    q = leaf(np.zeros((1, 3, 4)))
    with pytest.raises(TypeError, match="causal must be True or False, got 'no'"):
        F.scaled_dot_product_attention(q, q, q, causal="no")
    with pytest.raises(TypeError, match="share one float dtype, got float64, float32, float32"):
        single = leaf(np.zeros((1, 3, 4)), dtype=np.float32)
        F.scaled_dot_product_attention(q, single, single)
    with pytest.raises(TypeError, match="share one float dtype, got int64"):
        whole = tensor(np.zeros((1, 3, 4), np.int64))
        F.scaled_dot_product_attention(whole, whole, whole)
    empty = leaf(np.zeros((1, 3, 0)))
    with pytest.raises(ValueError, match=r"head size D \(last dimension\) must be at least 1"):
        F.scaled_dot_product_attention(empty, empty, empty)
    with pytest.raises(ValueError, match="dropout_p must be a probability in \\[0, 1\\], got True"):
        F.scaled_dot_product_attention(q, q, q, dropout_p=True, rng=np.random.default_rng(0))


def test_cross_entropy_rejects_other_ranks_and_no_classes():
    with pytest.raises(ValueError, match=r"logits must be \(N, C\), \(B, C, T\) or \(B, T, C\), got shape \(1, 2, 2, 3\)"):
        F.cross_entropy(tensor(np.zeros((1, 2, 2, 3))), np.zeros((1, 2, 2), np.int64))
    with pytest.raises(ValueError, match=r"at least one class \(C >= 1\), got shape \(2, 0\)"):
        F.cross_entropy(tensor(np.zeros((2, 0))), np.full(2, -100))


def test_gelu_cross_entropy_dropout_and_layer_norm_reject_wrong_types():
    with pytest.raises(TypeError, match="gelu: x must be a float tensor, got dtype int64"):
        F.gelu(tensor(np.array([-2, 1, 3])), approximate="none")
    with pytest.raises(TypeError, match="cross_entropy: logits must be a float tensor, got dtype int64"):
        F.cross_entropy(tensor(np.zeros((3, 5), np.int64)), np.array([1, 2, 3]))
    with pytest.raises(TypeError, match="ignore_index must be an int, got None"):
        F.cross_entropy(tensor(np.zeros((3, 5))), np.array([1, 2, 3]), ignore_index=None)
    with pytest.raises(TypeError, match="rng must be an autograd.Generator or a np.random.Generator, got int"):
        F.dropout(tensor(np.ones(4)), 0.5, rng=0)
    q = leaf(np.zeros((1, 3, 4)))
    with pytest.raises(TypeError, match="rng must be an autograd.Generator or a np.random.Generator, got RandomState"):
        F.scaled_dot_product_attention(q, q, q, dropout_p=0.1, rng=np.random.RandomState(0))
    # NumPy floats are probabilities too.
    F.scaled_dot_product_attention(q, q, q, dropout_p=np.float32(0.1), rng=np.random.default_rng(0))
    x = tensor(np.ones((2, 4), np.float32))
    for eps in (None, -1.0, float("nan"), "a"):
        with pytest.raises(ValueError, match=f"layer_norm: eps must be a finite number >= 0, got {eps!r}"):
            F.layer_norm(x, eps=eps)
    np.testing.assert_allclose(F.layer_norm(x, [1.0] * 4, [0.5] * 4).data, 0.5)  # lists as weight and bias


# --------------------------------------------------------------------------------------------
# Both kernel sets check the same arguments in autograd/functional.py (and Tensor.softmax), so
# they raise the same exception with the same message, before either kernel runs.
# --------------------------------------------------------------------------------------------

KERNEL_MODES = ["reference", "fast"]


@pytest.mark.parametrize("mode", KERNEL_MODES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax", "Tensor.softmax"])
def test_softmax_checks_dtype_and_dim_and_takes_a_0d_input_in_both_kernel_modes(mode, name):
    function = {"softmax": F.softmax, "log_softmax": F.log_softmax, "Tensor.softmax": lambda x, dim: x.softmax(dim)}[name]
    message_name = "log_softmax" if name == "log_softmax" else "softmax"
    with autograd.kernels(mode):
        with pytest.raises(TypeError, match=f"^{message_name}: input must be a float tensor, got int64$"):
            function(tensor([1, 2, 3]), -1)
        with pytest.raises(TypeError, match=f"^{message_name}: dim must be an int, got None$"):
            function(tensor([1.0, 2.0]), None)
        with pytest.raises(TypeError, match=f"^{message_name}: dim must be an int, got 'a'$"):
            function(tensor([1.0, 2.0]), "a")
        with pytest.raises(IndexError, match=f"^{message_name}: dim=2 is out of range for a tensor with 2 dimensions$"):
            function(tensor(np.zeros((2, 3))), 2)
        # A 0-d input: softmax 1.0 and log_softmax 0.0 (as PyTorch), 0-d, with gradient 0.
        x = leaf(2.5)
        out = function(x, -1)
        assert out.shape == () and out.dtype == np.float64
        assert out.item() == (0.0 if name == "log_softmax" else 1.0)
        out.backward()
        assert x.grad == 0.0
        np.testing.assert_allclose(function(x, np.int64(0)).data, out.data)  # a NumPy int is an int


@pytest.mark.parametrize("mode", KERNEL_MODES)
def test_linear_requires_one_float_dtype_and_tensors_in_both_kernel_modes(mode):
    x32, weight32, bias32 = (tensor(np.zeros(shape, np.float32)) for shape in [(2, 3), (4, 3), (4,)])
    with autograd.kernels(mode):
        with pytest.raises(TypeError, match="^linear: weight has dtype float32 but x has float64; use one dtype"):
            F.linear(leaf(np.zeros((2, 3))), weight32)
        with pytest.raises(TypeError, match="^linear: bias has dtype float64 but x has float32; use one dtype"):
            F.linear(x32, weight32, leaf(np.zeros(4)))
        with pytest.raises(TypeError, match="^linear: x must be a float tensor, got dtype int64$"):
            F.linear(tensor(np.zeros((2, 3), np.int64)), weight32)
        with pytest.raises(TypeError, match="^linear: weight must be a Tensor \\(or np.ndarray\\), got list$"):
            F.linear(x32, [[0.0] * 3] * 4)
        with pytest.raises(TypeError, match="^linear: bias must be a Tensor \\(or np.ndarray\\), got tuple$"):
            F.linear(x32, weight32, (0.0,) * 4)
        with pytest.raises(ValueError, match=r"^linear: x of shape \(2, 3\) .* weight has shape \(3,\) \(out, in\)$"):
            F.linear(x32, tensor(np.zeros(3, np.float32)))
        with pytest.raises(ValueError, match=r"^linear: bias must have shape \(4,\), got \(4, 1\)$"):
            F.linear(x32, weight32, tensor(np.zeros((4, 1), np.float32)))
        # An np.ndarray weight and bias are constants of the graph (as embedding's weight).
        x = leaf(np.ones((2, 3)))
        out = F.linear(x, np.full((4, 3), 0.5), np.arange(4.0))
        np.testing.assert_allclose(out.data, 1.5 + np.arange(4.0)[None, :].repeat(2, 0))
        out.sum().backward()
        np.testing.assert_allclose(x.grad, np.full((2, 3), 2.0))
        # nn.Linear meets the same check: float64 data into a float32 layer.
        from minigpt import nn

        with pytest.raises(TypeError, match="^linear: weight has dtype float32 but x has float64"):
            nn.Linear(3, 4)(leaf(np.zeros((2, 3))))


@pytest.mark.parametrize("mode", KERNEL_MODES)
def test_embedding_requires_a_2d_tensor_weight_in_both_kernel_modes(mode):
    with autograd.kernels(mode):
        with pytest.raises(ValueError, match=r"^embedding: weight must be 2-D \(num_embeddings, embedding_dim\), got shape \(5,\)$"):
            F.embedding(np.array([0, 1]), leaf(np.zeros(5)))
        with pytest.raises(TypeError, match="^embedding: weight must be a Tensor \\(or np.ndarray\\), got list$"):
            F.embedding(np.array([0, 1]), [[1.0, 2.0], [3.0, 4.0]])
        out = F.embedding(np.array([1, 1]), np.arange(6.0).reshape(3, 2))  # an array weight: a constant
        np.testing.assert_array_equal(out.data, [[2.0, 3.0], [2.0, 3.0]])


@pytest.mark.parametrize("mode", KERNEL_MODES)
def test_attention_with_a_1d_key_names_the_shapes_in_both_kernel_modes(mode):
    q = leaf(np.zeros((2, 3)))
    k = v = leaf(np.zeros(3))
    with autograd.kernels(mode):
        with pytest.raises(ValueError, match=r"^scaled_dot_product_attention: q \(2, 3\), k \(3,\), v \(3,\) must be \(\.\.\., T, D\)"):
            F.scaled_dot_product_attention(q, k, v)


@pytest.mark.parametrize("mode", KERNEL_MODES)
def test_dropout_of_an_integer_tensor_raises_in_both_kernel_modes(mode):
    counts = tensor([1, 2, 3, 4])
    with autograd.kernels(mode):
        with pytest.raises(TypeError, match=r"^dropout: x must be a float tensor \(.*\), got dtype int64$"):
            F.dropout(counts, 0.5, rng=np.random.default_rng(0))
        # As PyTorch: where nothing is dropped (eval, or p = 0), x comes back unchanged.
        assert F.dropout(counts, 0.5, training=False) is counts
        assert F.dropout(counts, 0.0) is counts
