"""The PyTorch names the book's code uses that minigpt gained with issue 22 (scripts/book_names.py).

Gradients against central differences in float64 with a random upstream gradient (`gradcheck`)
over hypothesis-drawn shapes; forward values against NumPy (an independent implementation of
the same definitions); the flags and the errors.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd as torch
import autograd.functional as F
from autograd import gradcheck, tensor
from autograd.testing import arrays, shapes
from minigpt import nn
from support.helpers import leaf

SETTINGS = settings(max_examples=15, deadline=None)


@SETTINGS
@given(x=arrays(shapes(min_dims=0, max_dims=3)))
def test_sin_cos_gradients_and_values(x):
    assert gradcheck(lambda t: t.sin(), [leaf(x)]) and gradcheck(lambda t: torch.cos(t), [leaf(x)])
    np.testing.assert_allclose(torch.sin(tensor(x)).data, np.sin(x))


@SETTINGS
@given(x=arrays(shapes(min_dims=1, max_dims=3)), data=st.data())
def test_cumsum_gradient_and_values(x, data):
    dim = data.draw(st.integers(-x.ndim, x.ndim - 1))
    assert gradcheck(lambda t: t.cumsum(dim), [leaf(x)])
    np.testing.assert_allclose(torch.cumsum(tensor(x), dim).data, np.cumsum(x, axis=dim))
    assert torch.tensor([True, True]).cumsum(0).tolist() == [1, 2]  # bools count in int64, as PyTorch


@SETTINGS
@given(x=arrays(shapes(min_dims=1, max_dims=3, max_side=3)), data=st.data())
def test_pad_gradient_values_and_crops(x, data):
    pairs = data.draw(st.integers(1, x.ndim))
    widths = data.draw(st.lists(st.integers(-1, 2), min_size=2 * pairs, max_size=2 * pairs))
    for d in range(pairs):  # a crop never removes a whole dimension
        side = x.shape[x.ndim - 1 - d]
        widths[2 * d], widths[2 * d + 1] = max(widths[2 * d], 1 - side), max(widths[2 * d + 1], 1 - side - min(widths[2 * d], 0))
    assert gradcheck(lambda t: F.pad(t, tuple(widths), value=0.5), [leaf(x)])
    assert F.pad(tensor([[1.0, 2.0]]), (1, 0, 0, 1)).tolist() == [[0.0, 1.0, 2.0], [0.0, 0.0, 0.0]]
    assert F.pad(tensor([1.0, 2.0, 3.0]), (-1, 1), value=9.0).tolist() == [2.0, 3.0, 9.0]
    with pytest.raises(ValueError, match="pairs of widths"):
        F.pad(tensor([1.0]), (1,))


def test_einsum_against_numpy_and_gradient():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 4, 5))
    for equation, operands in [("bij,bjk->bik", (a, b)), ("bij,bjk->bk", (a, b)), ("bij->bji", (a,)), ("bij,bjk->kib", (a, b))]:
        got = torch.einsum(equation, *[tensor(o) for o in operands]).data
        np.testing.assert_allclose(got, np.einsum(equation, *operands), rtol=1e-12)
        assert gradcheck(lambda *ts, e=equation: torch.einsum(e, *ts), [leaf(o) for o in operands])
    with pytest.raises(ValueError, match="explicit output"):
        torch.einsum("ij,jk", tensor(a[0]), tensor(b[0]))


@SETTINGS
@given(x=arrays(shapes(min_dims=1, max_dims=3, max_side=3)), data=st.data())
def test_repeat_and_repeat_interleave_gradients_and_values(x, data):
    sizes = tuple(data.draw(st.lists(st.integers(1, 3), min_size=x.ndim, max_size=x.ndim + 1)))
    assert gradcheck(lambda t: t.repeat(*sizes), [leaf(x)])
    np.testing.assert_array_equal(tensor(x).repeat(*sizes).data, np.tile(x, sizes))
    dim = data.draw(st.integers(0, x.ndim - 1))
    assert gradcheck(lambda t: torch.repeat_interleave(t, 2, dim=dim), [leaf(x)])
    np.testing.assert_array_equal(tensor(x).repeat_interleave(2, dim=dim).data, np.repeat(x, 2, axis=dim))


@SETTINGS
@given(x=arrays(shapes(min_dims=2, max_dims=3)))
def test_norm_tril_triu_index_select_unbind_outer(x):
    assert gradcheck(lambda t: t.norm(dim=-1), [leaf(x + np.sign(x) + (x == 0))])  # away from the kink at 0
    np.testing.assert_allclose(tensor(x).norm().data, np.linalg.norm(x.ravel()))
    assert gradcheck(lambda t: t.tril(), [leaf(x)]) and gradcheck(lambda t: t.triu(1), [leaf(x)])
    np.testing.assert_array_equal(tensor(x).tril(-1).data, np.tril(x, -1))
    np.testing.assert_array_equal(tensor(x).triu().data, np.triu(x))
    index = np.array([x.shape[-1] - 1, 0, 0])
    assert gradcheck(lambda t: t.index_select(-1, torch.tensor(index)), [leaf(x)])
    assert [piece.shape for piece in tensor(x).unbind(0)] == [x.shape[1:]] * x.shape[0]
    vector = x.ravel()[:3]
    assert gradcheck(lambda a, b: torch.outer(a, b), [leaf(vector), leaf(vector[::-1])])


def test_predicates_comparisons_and_small_helpers():
    x = tensor([[1.0, np.nan], [0.0, np.inf]])
    assert torch.isnan(x).tolist() == [[False, True], [False, False]]
    assert torch.isinf(x).any().item() and not torch.isfinite(x).all().item()
    assert x.any(dim=1).tolist() == [True, True] and tensor([1, 0]).logical_not().tolist() == [False, True]
    assert torch.equal(tensor([1, 2]), tensor([1, 2])) and not torch.equal(tensor([1, 2]), tensor([[1, 2]]))
    assert torch.allclose(tensor([1.0]), tensor([1.0 + 1e-6])) and not torch.allclose(tensor([1.0]), tensor([1.1]))
    values, counts = torch.unique(tensor([3, 1, 3]), return_counts=True)
    assert values.tolist() == [1, 3] and counts.tolist() == [1, 2]
    assert torch.eye(2, dtype=torch.float64).dtype == np.float64 and torch.finfo(torch.float32).eps == np.finfo(np.float32).eps
    assert torch.get_default_dtype() == torch.float32 and torch.version.cuda is None
    assert tensor([1.5, -1.5]).ceil().tolist() == [2.0, -1.0] and tensor([1.5]).floor().tolist() == [1.0]
    one = tensor([1.0])
    assert one.element_size() == 4 and one.cpu() is one and one.detach().data_ptr() == one.data_ptr()
    assert F.one_hot(tensor([0, 2])).tolist() == [[1, 0, 0], [0, 0, 1]]
    torch.set_float32_matmul_precision("high")
    with pytest.raises(ValueError, match="'highest', 'high' or 'medium'"):
        torch.set_float32_matmul_precision("low")
    with torch.inference_mode():
        assert not (leaf([1.0]) * 2).requires_grad
    assert torch.softmax(tensor([0.0, 0.0]), dim=0, dtype=torch.float64).dtype == np.float64
    assert torch.as_tensor([1, 2], dtype=torch.float32).dtype == np.float32


def test_in_place_copy_index_add_and_scatter():
    x = torch.zeros(2, 3)
    x.copy_(tensor([1.0, 2.0, 3.0]))
    assert x.tolist() == [[1.0, 2.0, 3.0]] * 2
    x.index_add_(0, tensor([0, 0]), torch.ones(2, 3))
    assert x[0].tolist() == [3.0, 4.0, 5.0]  # a repeated index adds twice
    y = torch.zeros(2, 3).scatter(1, tensor([[2], [0]]), 7.0)
    assert y.tolist() == [[0.0, 0.0, 7.0], [7.0, 0.0, 0.0]]
    with pytest.raises(RuntimeError, match="no gradient for index_add_"):
        leaf(np.zeros((2, 3))).index_add_(0, tensor([0]), torch.ones(1, 3))


def test_scaled_dot_product_attention_takes_pytorchs_arguments():
    rng = np.random.default_rng(1)
    q, k, v = (rng.standard_normal((2, 2, 4, 3)) for _ in range(3))
    causal = F.scaled_dot_product_attention(tensor(q), tensor(k), tensor(v), is_causal=True).data
    allowed = np.tril(np.ones((4, 4), dtype=bool))
    masked = F.scaled_dot_product_attention(tensor(q), tensor(k), tensor(v), attn_mask=tensor(allowed)).data
    additive = F.scaled_dot_product_attention(tensor(q), tensor(k), tensor(v), attn_mask=np.where(allowed, 0.0, -np.inf)).data
    np.testing.assert_allclose(masked, causal, rtol=1e-12)
    np.testing.assert_allclose(additive, causal, rtol=1e-12)
    full = F.scaled_dot_product_attention(tensor(q), tensor(k), tensor(v)).data  # PyTorch's default: not causal
    scores = q @ np.swapaxes(k, -1, -2) / np.sqrt(3)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    np.testing.assert_allclose(full, weights / weights.sum(-1, keepdims=True) @ v, rtol=1e-10)
    scaled = F.scaled_dot_product_attention(tensor(q), tensor(k), tensor(v), scale=1 / np.sqrt(3)).data
    np.testing.assert_allclose(scaled, full, rtol=1e-12)
    assert gradcheck(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, attn_mask=tensor(allowed)), [leaf(q), leaf(k), leaf(v)])
    with pytest.raises(ValueError, match="not both"):
        F.scaled_dot_product_attention(tensor(q), tensor(k), tensor(v), attn_mask=tensor(allowed), is_causal=True)


def test_module_forward_hooks_register_parameter_and_to_empty():
    layer = nn.Linear(2, 2)
    seen = []
    handle = layer.register_forward_hook(lambda module, args, output: seen.append((module, args[0].shape)))
    layer(torch.ones(3, 2))
    assert seen == [(layer, (3, 2))]
    replace = layer.register_forward_hook(lambda module, args, output: output * 0)
    assert layer(torch.ones(1, 2)).abs().sum().item() == 0.0
    handle.remove()
    replace.remove()
    assert layer(torch.ones(1, 2)).abs().sum().item() != 0.0 and len(seen) == 2
    layer.register_parameter("extra", nn.Parameter(np.zeros(2, dtype=np.float32)))
    assert "extra" in dict(layer.named_parameters())
    layer.register_parameter("extra", None)
    assert "extra" not in dict(layer.named_parameters()) and layer.extra is None
    assert layer.to_empty(device="cpu") is layer
