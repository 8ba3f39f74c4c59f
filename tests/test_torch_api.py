"""The PyTorch-compatible surface of the engine (`import autograd as torch`), as the book calls it.

Values are checked against NumPy or against numbers worked out by hand (appendix A's logistic
example, the book's printed 0.0852 / -0.0898 / -0.0817); every new differentiable operation is
checked against finite differences in float64 over hypothesis-drawn shapes (autograd.testing).
"""

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd as torch
from autograd import functional as F
from autograd import gradcheck
from autograd.testing import arrays, dims, shapes, tensors
from support.helpers import leaf

FEW = settings(max_examples=25, deadline=None)


# --------------------------------------------------------------------------------------------
# Randomness: one default generator, re-seeded by manual_seed
# --------------------------------------------------------------------------------------------


def test_manual_seed_makes_every_default_draw_reproducible():
    def draws():
        torch.manual_seed(123)
        return (torch.rand(3).data, torch.randn(2, 2).data,
                torch.multinomial(torch.tensor([0.2, 0.3, 0.5]), 5, replacement=True).data,
                F.dropout(torch.ones(16), 0.5).data)

    first, second = draws(), draws()
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    torch.manual_seed(124)
    assert not np.array_equal(torch.rand(3).data, first[0])


def test_default_generator_and_resolve_generator():
    generator = torch.manual_seed(7)
    assert torch.default_generator is generator  # one object, re-seeded in place (torch.default_generator)
    assert torch.resolve_generator(None) is generator
    explicit = np.random.default_rng(1)
    assert torch.resolve_generator(explicit) is explicit
    seeded = torch.resolve_generator(5)
    assert seeded is not generator and seeded.initial_seed() == 5  # an int seeds a new autograd.Generator
    # An explicit generator is used as is and leaves the default one alone.
    before = generator.get_state()
    np.testing.assert_array_equal(torch.rand(4, generator=np.random.default_rng(3)).data,
                                  np.random.default_rng(3).random(4, dtype=np.float32))
    np.testing.assert_array_equal(generator.get_state(), before)
    with pytest.raises(TypeError, match="must be None, an int seed, an autograd.Generator or a np.random.Generator, got float"):
        torch.resolve_generator(1.5)
    with pytest.raises(TypeError, match="got RandomState"):
        torch.resolve_generator(np.random.RandomState(0))
    with pytest.raises(ValueError, match=r"must be in \[0, 2\*\*64\), got -1"):
        torch.resolve_generator(-1)
    # As PyTorch: int(seed), negatives from -2**63 wrap modulo 2**64, the rest is an error.
    assert torch.manual_seed(-3).initial_seed() == 2**64 - 3
    with pytest.raises(ValueError, match=r"seed must be an int in \[0, 2\*\*64\), got 'abc'"):
        torch.manual_seed("abc")
    with pytest.raises(TypeError, match="seed must be an int in .*got list"):
        torch.manual_seed([1])


# --------------------------------------------------------------------------------------------
# Creation functions, dtypes, devices
# --------------------------------------------------------------------------------------------


def test_creation_shapes_dtypes_and_values():
    assert torch.zeros(2, 3).shape == (2, 3) and torch.zeros(2, 3).dtype == torch.float32
    assert torch.ones((2, 3)).shape == (2, 3) and torch.ones([4]).data.sum() == 4
    assert torch.empty(6, 6).shape == (6, 6)
    assert torch.zeros(3, dtype=torch.long).dtype == np.int64
    assert torch.rand((1, 50)).shape == (1, 50) and torch.rand(2).dtype == np.float32
    values = torch.rand(1000).data
    assert values.min() >= 0 and values.max() < 1
    assert torch.randn(3, dtype=torch.float64).dtype == np.float64
    np.testing.assert_array_equal(torch.full((2,), 7).data, [7, 7])
    assert torch.full((2,), 7).dtype == np.int64 and torch.full((2,), 0.5).dtype == np.float32
    x = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    assert torch.zeros_like(x).dtype == np.float64 and torch.ones_like(x).data.tolist() == [[1.0, 1.0]]
    assert np.isneginf(torch.full_like(x, -torch.inf).data).all()
    assert torch.randn_like(x).shape == x.shape and torch.rand_like(x).dtype == np.float64
    assert torch.tensor([1, 2], requires_grad=False).dtype == torch.long
    assert torch.zeros(2, requires_grad=True).requires_grad
    with pytest.raises(ValueError, match=r"zeros: size must be non-negative ints, got \(2, -1\)"):
        torch.zeros(2, -1)
    with pytest.raises(TypeError, match="rand: dtype must be float32 or float64, got int64"):
        torch.rand(2, dtype=torch.long)
    with pytest.raises(RuntimeError, match="minigpt runs on the CPU only"):
        torch.ones(2, device="cuda")


def test_arange_and_linspace_follow_torch():
    assert torch.arange(5).data.tolist() == [0, 1, 2, 3, 4] and torch.arange(5).dtype == np.int64
    assert torch.arange(2, 8, 2).data.tolist() == [2, 4, 6]
    floats = torch.arange(0.0, 1.0, 0.1)
    assert floats.dtype == np.float32 and floats.shape == (10,)
    np.testing.assert_allclose(torch.linspace(-3, 3, 7).data, [-3, -2, -1, 0, 1, 2, 3])
    assert torch.linspace(0, 1, 5).dtype == np.float32
    with pytest.raises(ValueError, match="step must be nonzero"):
        torch.arange(0, 3, 0)
    with pytest.raises(ValueError, match="steps must be a non-negative int, got 2.5"):
        torch.linspace(0, 1, 2.5)


@given(shape=shapes(min_dims=2, max_dims=4), diagonal=st.integers(-4, 4), data=st.data())
@FEW
def test_tril_and_triu_match_numpy_and_pass_gradcheck(shape, diagonal, data):
    x = leaf(data.draw(arrays(shape)))
    np.testing.assert_array_equal(torch.tril(x, diagonal).data, np.tril(x.data, diagonal))
    np.testing.assert_array_equal(torch.triu(x, diagonal=diagonal).data, np.triu(x.data, diagonal))
    assert gradcheck(lambda t: torch.tril(t, diagonal), [x])
    assert gradcheck(lambda t: torch.triu(t, diagonal), [x])


def test_the_books_causal_mask():
    mask = torch.triu(torch.ones(4, 4), diagonal=1)  # ch. 3.5.1
    assert mask.data.tolist() == [[0, 1, 1, 1], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    assert torch.tril(torch.ones(3, 3)).data.sum() == 6
    with pytest.raises(ValueError, match="tril: input must have at least 2 dimensions, got shape"):
        torch.tril(torch.ones(3))


def test_from_numpy_shares_memory_and_tensor_copies():
    array = np.array([[[1, 2], [3, 4]], [[5, 6], [7, 8]]])  # appendix A.2
    copied, shared = torch.tensor(array), torch.from_numpy(array)
    array[0, 0, 0] = 999
    assert copied.data[0, 0, 0] == 1 and shared.data[0, 0, 0] == 999
    shared[0, 0, 1] = -1  # and the other way round
    assert array[0, 0, 1] == -1
    with pytest.raises(TypeError, match="from_numpy: expected an np.ndarray, got list"):
        torch.from_numpy([1, 2])
    stacked = torch.tensor([torch.tensor(1.5), torch.tensor(2.5)])  # a list of one-element tensors
    assert stacked.data.tolist() == [1.5, 2.5]


def test_dtypes_devices_and_version():
    assert torch.tensor([1, 2, 3]).dtype == torch.int64 == torch.long
    assert torch.tensor([1.0]).dtype == torch.float32 == torch.float
    assert torch.tensor([1, 2], dtype=torch.float64).dtype == torch.double
    assert torch.tensor([True]).dtype == torch.bool and torch.float16 == torch.half
    assert torch.inf == math.inf and torch.pi == math.pi
    assert isinstance(torch.__version__, str) and len(torch.__version__.split(".")) >= 2
    assert torch.cuda.is_available() is False and torch.backends.mps.is_available() is False
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # the book's line
    assert device == "cpu" and str(device) == "cpu" and repr(device) == "device(type='cpu')"
    assert torch.device("cuda:1").index == 1 and torch.device("cuda:1") != device
    with pytest.raises(ValueError, match="expected a device string such as 'cpu'"):
        torch.device("CPU!")
    with pytest.raises(RuntimeError, match=r"device: device 'tpu' is not available: minigpt runs on the CPU only"):
        torch.device("tpu")  # a type PyTorch does not know raises when named, not only at .to()
    with pytest.raises(RuntimeError, match=r"device 'tpu:0' is not available: minigpt runs on the CPU only"):
        torch.tensor([1.0], device="tpu:0")


# --------------------------------------------------------------------------------------------
# Tensor methods: to, device, dim, formatting, conversions
# --------------------------------------------------------------------------------------------


def test_to_device_and_dtype():
    x = torch.tensor([1.0, 2.0])
    assert x.to("cpu") is x and x.to(torch.device("cpu")) is x and x.device == "cpu"
    assert x.to(torch.float64).dtype == np.float64
    assert x.to("cpu", torch.float64).dtype == np.float64 and x.to(dtype=torch.long).dtype == np.int64
    assert x.to(torch.tensor([1], dtype=torch.int32)).dtype == np.int32
    with pytest.raises(RuntimeError, match=r"to: device 'cuda' is not available: minigpt runs on the CPU only"):
        x.to("cuda")
    with pytest.raises(RuntimeError, match="device 'mps' is not available"):
        x.to(torch.device("mps"))
    with pytest.raises(TypeError, match="to: expected a device"):
        x.to(3.5)
    w = leaf([1.0, 2.0])
    w.to(torch.float32).sum().backward()  # the cast is recorded: the gradient flows back
    np.testing.assert_array_equal(w.grad, [1.0, 1.0])


def test_conversions_and_formatting():
    loss = torch.tensor(1.23456)
    assert f"{loss:.2f}" == "1.23" and float(loss) == pytest.approx(1.23456) and int(torch.tensor(3)) == 3
    assert [10, 20, 30][torch.tensor(1)] == 20
    assert torch.tensor([[1, 0]]).bool().data.tolist() == [[True, False]]
    assert torch.tensor([1.7]).long().dtype == np.int64 and torch.tensor([1.7]).int().dtype == np.int32
    assert torch.ones(2, 3, 4).dim() == 3 and torch.ones(2, 3).numel() == 6 and torch.ones(2, 3).size(1) == 3
    assert np.asarray(torch.tensor([1.0, 2.0])).tolist() == [1.0, 2.0]
    assert np.asarray([torch.tensor([1, 2]), torch.tensor([3, 4])]).dtype == np.int64  # no object arrays


def test_set_printoptions():
    small = torch.tensor([1e-8, 1.0])
    try:
        torch.set_printoptions(sci_mode=False)
        assert "e-" not in repr(small)
        torch.set_printoptions(sci_mode=True, precision=2)
        assert "1.00e+00" in repr(small)
    finally:
        torch.set_printoptions(profile="default")
    assert "e-08" in repr(small)
    with pytest.raises(ValueError, match="profile must be"):
        torch.set_printoptions(profile="long")


# --------------------------------------------------------------------------------------------
# Top-level functions
# --------------------------------------------------------------------------------------------


def test_top_level_functions_equal_the_methods():
    x = torch.tensor([0.5, 1.0, 2.0])
    for function, method in [(torch.exp, x.exp), (torch.log, x.log), (torch.sqrt, x.sqrt), (torch.tanh, x.tanh), (torch.abs, x.abs)]:
        np.testing.assert_array_equal(function(x).data, method().data)
    np.testing.assert_allclose(torch.pow(x, 3).data, x.data ** 3, rtol=1e-6)
    np.testing.assert_allclose(torch.pow(2.0, x).data, 2.0 ** x.data, rtol=1e-6)
    np.testing.assert_allclose(torch.softmax(x, dim=0).data, np.exp(x.data) / np.exp(x.data).sum(), rtol=1e-6)
    np.testing.assert_allclose(torch.sigmoid(x).data, 1 / (1 + np.exp(-x.data)), rtol=1e-6)
    assert torch.mean(x).item() == pytest.approx(3.5 / 3)
    assert torch.argmax(torch.tensor([[1, 5, 2], [7, 0, 3]]), dim=1).data.tolist() == [1, 0]
    # torch.sum of a comparison counts matches (appendix A.7's accuracy), as an int64 tensor.
    predictions, labels = torch.tensor([0, 0, 1, 1, 1]), torch.tensor([0, 0, 0, 1, 1])
    correct = torch.sum(predictions == labels)
    assert correct.dtype == np.int64 and correct.item() == 4
    assert (torch.tensor(0.0) + correct / 5).item() == pytest.approx(0.8)
    assert torch.nonzero(torch.tensor([0, 3, 0, 4])).data.tolist() == [[1], [3]]
    assert torch.bincount(torch.tensor([0, 2, 2]), minlength=4).data.tolist() == [1, 0, 2, 0]


@given(a=tensors(shape=st.integers(1, 6).map(lambda n: (n,))), data=st.data())
@FEW
def test_dot_value_and_gradcheck(a, data):
    b = leaf(data.draw(arrays(a.shape)))
    assert torch.dot(a, b).item() == pytest.approx(float(np.dot(a.data, b.data)))
    assert gradcheck(lambda x, y: x.dot(y), [a, b])


def test_dot_errors():
    with pytest.raises(ValueError, match=r"dot: expected two 1-D tensors, got shapes \(2, 2\) and \(2,\)"):
        torch.dot(torch.ones(2, 2), torch.ones(2))
    with pytest.raises(ValueError, match="dot: inconsistent tensor sizes 2 and 3"):
        torch.dot(torch.ones(2), torch.ones(3))


@given(x=tensors(min_dims=1, max_dims=3, distinct=True), data=st.data())
@FEW
def test_topk_matches_a_sort_and_passes_gradcheck(x, data):
    dim = data.draw(dims(x.ndim))
    k = data.draw(st.integers(0, x.shape[dim]))
    largest = data.draw(st.booleans())
    values, indices = torch.topk(x, k, dim=dim, largest=largest)
    order = np.argsort(-x.data if largest else x.data, axis=dim)
    expected = np.take(order, np.arange(k), axis=dim)
    np.testing.assert_array_equal(indices.data, expected)
    np.testing.assert_array_equal(values.data, np.take_along_axis(x.data, expected, axis=dim))
    assert gradcheck(lambda t: t.topk(k, dim=dim, largest=largest).values, [x])


def test_topk_as_in_chapter_5():
    next_token_logits = torch.tensor([4.51, 0.89, -1.90, 6.75, 1.63, -1.62, -1.89, 6.28, 1.79])
    top_logits, top_pos = torch.topk(next_token_logits, 3)
    np.testing.assert_allclose(top_logits.data, [6.75, 6.28, 4.51])
    assert top_pos.data.tolist() == [3, 7, 0]
    new_logits = torch.where(next_token_logits < top_logits[-1], torch.tensor(float("-inf")), next_token_logits)
    assert np.isinf(new_logits.data).sum() == 6
    with pytest.raises(ValueError, match=r"topk: k must be an int in \[0, 9\], got 10"):
        torch.topk(next_token_logits, 10)


@given(x=tensors(min_dims=1, max_dims=3), data=st.data())
@FEW
def test_gather_matches_numpy_and_passes_gradcheck(x, data):
    dim = data.draw(dims(x.ndim))
    axis = dim % x.ndim
    index_shape = tuple(data.draw(st.integers(1, 4)) if d == axis else data.draw(st.integers(1, size)) for d, size in enumerate(x.shape))
    index = data.draw(arrays(index_shape, low=0, high=x.shape[axis] - 1).map(lambda a: np.floor(a).astype(np.int64)))
    out = torch.gather(x, dim, torch.tensor(index))
    sub = x.data[tuple(slice(0, s) if d != axis else slice(None) for d, s in enumerate(index.shape))]
    np.testing.assert_array_equal(out.data, np.take_along_axis(sub, index, axis=axis))
    assert gradcheck(lambda t: t.gather(dim, index), [x])  # repeated indices add their gradients


def test_gather_errors():
    x = torch.ones(2, 3)
    with pytest.raises(TypeError, match="gather: index must be an integer tensor, got dtype float32"):
        x.gather(1, torch.ones(2, 1))
    with pytest.raises(ValueError, match="gather: index out of range for dimension 1 of size 3"):
        x.gather(1, torch.tensor([[3], [0]]))
    with pytest.raises(ValueError, match="gather: index has 1 dimensions but input has 2"):
        x.gather(1, torch.tensor([0]))


@given(x=tensors(min_dims=1, max_dims=4))
@FEW
def test_clone_flatten_contiguous_chunk(x):
    copy = x.clone()
    assert not np.shares_memory(copy.data, x.data)
    assert gradcheck(lambda t: t.clone() * 2, [x])
    assert x.flatten().shape == (x.data.size,)
    assert gradcheck(lambda t: t.flatten(0, -1), [x])
    np.testing.assert_array_equal(x.T.contiguous().data, x.data.T)
    assert x.contiguous() is x
    pieces = x.chunk(2, dim=0)
    size = -(-x.shape[0] // 2)  # torch.chunk: pieces of ceil(n / chunks), the last one smaller
    assert [p.shape[0] for p in pieces] == [size, x.shape[0] - size][:len(pieces)] and sum(p.shape[0] for p in pieces) == x.shape[0]
    np.testing.assert_array_equal(torch.cat(pieces, dim=0).data, x.data)
    assert gradcheck(lambda t: torch.cat([p * (i + 1) for i, p in enumerate(t.chunk(3, -1))], dim=-1), [x])


def test_flatten_and_chunk_like_torch():
    logits = torch.ones(2, 3, 5)
    assert logits.flatten(0, 1).shape == (6, 5) and torch.flatten(logits, 1).shape == (2, 15)
    assert [p.shape[0] for p in torch.ones(5).chunk(2)] == [3, 2]
    assert [p.shape[0] for p in torch.ones(6).chunk(4)] == [2, 2, 2]  # torch gives 3 pieces too
    with pytest.raises(ValueError, match="flatten: start_dim 2 comes after end_dim 1"):
        logits.flatten(2, 1)


def test_multinomial():
    probas = torch.softmax(torch.tensor([1.0, 2.0, 0.5, 3.0]), dim=0)
    torch.manual_seed(123)
    draws = torch.multinomial(probas, num_samples=20000, replacement=True).data
    counts = np.bincount(draws, minlength=4) / draws.size
    np.testing.assert_allclose(counts, probas.data, atol=0.015)  # 4 sigma at n = 20000
    assert torch.multinomial(probas, num_samples=1).shape == (1,)
    batch = torch.multinomial(torch.tensor([[0.0, 1.0], [1.0, 0.0]]), 1)
    assert batch.data.tolist() == [[1], [0]] and batch.dtype == np.int64  # zero weights never drawn
    unique = torch.multinomial(torch.ones(5), 5).data
    assert sorted(unique.tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="inf, nan or element < 0"):
        torch.multinomial(torch.tensor([0.5, -0.1]), 1)
    with pytest.raises(ValueError, match="cannot draw 3 samples without replacement"):
        torch.multinomial(torch.tensor([0.5, 0.5, 0.0]), 3)


# --------------------------------------------------------------------------------------------
# In-place changes and item assignment (PyTorch's autograd rules)
# --------------------------------------------------------------------------------------------


def test_item_assignment_on_tensors_without_gradient():
    scores = torch.empty(3, 3)  # ch. 3.3.1 fills an empty tensor element by element
    inputs = torch.tensor([[0.43, 0.15, 0.89], [0.55, 0.87, 0.66], [0.57, 0.85, 0.64]])
    for i, x_i in enumerate(inputs):
        for j, x_j in enumerate(inputs):
            scores[i, j] = torch.dot(x_i, x_j)
    np.testing.assert_allclose(scores.data, inputs.data @ inputs.data.T, rtol=1e-6)
    scores[0] = 0.0
    scores[:, 2] = torch.tensor([7.0, 8.0, 9.0])
    assert scores.data[0].tolist() == [0.0, 0.0, 7.0] and scores.data[2, 2] == 9.0
    with pytest.raises(ValueError, match=r"a value of shape \(2,\) cannot be assigned to a selection of shape \(3,\)"):
        scores[0] = torch.tensor([1.0, 2.0])


def test_in_place_on_a_leaf_that_requires_grad_follows_pytorch():
    weight = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being used in an in-place operation"):
        weight[0] = 5.0
    with pytest.raises(RuntimeError, match="masked_fill_: a leaf Variable"):
        weight.masked_fill_(torch.tensor([True, False]), 0.0)
    with torch.no_grad():  # initialisation: allowed
        weight[0] = 5.0
        weight.fill_(3.0)
    assert weight.data.tolist() == [3.0, 3.0] and weight.requires_grad


@given(x=tensors(min_dims=1, max_dims=3), data=st.data())
@FEW
def test_setitem_on_a_graph_tensor_passes_gradcheck(x, data):
    row = data.draw(st.integers(0, x.shape[0] - 1))
    # The value fills row `row`: its own shape, or one with size-1 dimensions that broadcast.
    value_shape = tuple(data.draw(st.sampled_from([size, 1])) for size in x.shape[1:])
    value = leaf(data.draw(arrays(value_shape)))

    def assign_row(a, v):
        out = a * 1.0  # a non-leaf: item assignment is recorded as SetItem
        out[row] = v
        out[..., -1] = 10.0  # and a constant, over the first assignment
        return out

    result = assign_row(x, value)
    expected = x.data.copy()
    expected[row] = value.data
    expected[..., -1] = 10.0
    np.testing.assert_array_equal(result.data, expected)
    assert gradcheck(assign_row, [x, value])


@given(x=tensors(shapes(min_dims=2, max_dims=3)), data=st.data())
@FEW
def test_masked_fill_in_place_equals_masked_fill_and_passes_gradcheck(x, data):
    mask = data.draw(st.lists(st.booleans(), min_size=x.shape[-1], max_size=x.shape[-1]).map(np.array))

    def in_place(t):
        scores = t * 2.0  # the book's attn_scores: a non-leaf
        scores.masked_fill_(torch.tensor(mask), -3.0)
        return scores

    np.testing.assert_array_equal(in_place(x).data, (x * 2.0).masked_fill(mask, -3.0).data)
    assert gradcheck(in_place, [x])


def test_masked_fill_in_place_with_minus_inf_before_softmax_as_in_chapter_3():
    torch.manual_seed(0)
    weights = leaf(np.random.default_rng(0).standard_normal((4, 4)))
    scores = weights @ weights.T
    mask = torch.triu(torch.ones(4, 4), diagonal=1)
    scores.masked_fill_(mask.bool(), -torch.inf)
    attention = torch.softmax(scores, dim=-1)
    assert np.all(attention.data[mask.data.astype(bool)] == 0)
    np.testing.assert_allclose(attention.data.sum(axis=-1), 1.0)
    attention.sum().backward()
    assert np.all(np.isfinite(weights.grad))
    # fill_ and zero_ on plain tensors change the array itself.
    plain = torch.ones(3)
    plain.fill_(2.0)
    plain[1:].zero_()
    assert plain.data.tolist() == [2.0, 0.0, 0.0]  # a slice is a view, as in PyTorch


MODIFIED_IN_PLACE = "one of the variables needed for gradient computation has been modified by an inplace operation"


@pytest.mark.parametrize("change", [
    lambda x: x.__setitem__(0, 10.0),
    lambda x: x.masked_fill_(torch.tensor([True, False]), 10.0),
    lambda x: x.fill_(10.0),
    lambda x: x.zero_(),
], ids=["setitem", "masked_fill_", "fill_", "zero_"])
def test_in_place_change_after_an_operation_used_the_tensor_raises_at_backward(change):
    start = leaf([1.0, 2.0])
    x = start * 1.0
    y = x * x  # Mul used x at version 0
    change(x)
    assert x._version == 1
    with pytest.raises(RuntimeError, match=MODIFIED_IN_PLACE + r": input 0 of Mul .* is at version 1; expected version 0"):
        y.sum().backward()
    with pytest.raises(RuntimeError, match=MODIFIED_IN_PLACE):
        torch.autograd.grad(y.sum(), start)


def test_in_place_change_of_a_saved_tensor_under_no_grad_or_without_grad_raises_at_backward():
    weight = torch.tensor([1.0, -2.0], requires_grad=True)
    constant = torch.tensor([3.0, 4.0])  # needs no gradient; Mul saves it for weight's gradient
    hidden = weight * constant
    constant[0] = 0.0  # written in place: the array Mul saved now holds other values
    with pytest.raises(RuntimeError, match=MODIFIED_IN_PLACE + ": input 1 of Mul"):
        hidden.sum().backward()
    hidden = weight * 2.0
    with torch.no_grad():
        weight.fill_(0.5)  # a leaf changed after Mul saved it (initialisation comes before use)
    with pytest.raises(RuntimeError, match=MODIFIED_IN_PLACE + ": input 0 of Mul"):
        hidden.sum().backward()


def test_in_place_changes_before_use_or_after_backward_are_allowed():
    weight = leaf([1.0, -2.0, 0.5])
    scores = weight * 2.0
    scores[0] = 0.0  # before any operation used it: the chapter-3 pattern
    scores.masked_fill_(torch.tensor([False, True, False]), 1.0)
    loss = (scores * scores).sum()
    loss.backward()
    np.testing.assert_allclose(weight.grad, [0.0, 0.0, 4.0 * 2.0 * 0.5])
    scores.fill_(0.0)  # after the backward that used it: nothing left to check
    assert scores._version == 3


# --------------------------------------------------------------------------------------------
# .grad: a Gradient (np.ndarray subclass) usable as the book uses it
# --------------------------------------------------------------------------------------------


def test_grad_is_an_ndarray_with_the_books_spellings():
    param = leaf([[1.0, -2.0], [3.0, -4.0]])
    (param * param).sum().backward()
    grad = param.grad
    assert isinstance(grad, np.ndarray) and isinstance(grad, torch.Gradient)
    # ch. 4's print_gradients and appendix D's find_highest_gradient, unchanged:
    assert param.grad.abs().mean().item() == pytest.approx(5.0)
    assert param.grad.data.flatten().max() == 6.0
    assert param.grad.data is param.grad and param.grad.numel() == 4 and param.grad.dim() == 2
    # Arithmetic gives plain arrays: the subclass never spreads into other computations.
    assert type(grad * 2) is np.ndarray and type(grad.sum()) is np.float64
    flat = grad.reshape(-1)  # plain, so an optimizer's chunk loop runs at plain-array speed
    assert type(flat) is np.ndarray and np.shares_memory(flat, grad)
    # Accumulation over two backward passes keeps the type and adds in place.
    memory = param.grad
    (param * param).sum().backward()
    assert param.grad is memory and param.grad.tolist() == [[4.0, -8.0], [12.0, -16.0]]
    param.grad = np.zeros((2, 2))
    assert type(param.grad) is torch.Gradient
    param.grad = None
    assert param.grad is None
    with pytest.raises(TypeError, match="grad must be None, an np.ndarray or a Tensor, got list"):
        param.grad = [1.0]


# --------------------------------------------------------------------------------------------
# torch.autograd.grad (appendix A.4)
# --------------------------------------------------------------------------------------------


def _logistic_example():
    y, x1 = torch.tensor([1.0]), torch.tensor([1.1])
    w1, b = torch.tensor([2.2], requires_grad=True), torch.tensor([0.0], requires_grad=True)
    a = torch.sigmoid(x1 * w1 + b)
    return F.binary_cross_entropy(a, y), w1, b


def test_appendix_a_logistic_example_and_its_gradients():
    loss, w1, b = _logistic_example()
    # By hand: z = 2.42, loss = -log(sigmoid(z)) = log(1 + e^-z); dL/dz = sigmoid(z) - 1.
    z = 2.42
    assert loss.item() == pytest.approx(math.log1p(math.exp(-z)), rel=1e-6)
    assert round(loss.item(), 4) == 0.0852  # the book prints tensor(0.0852)
    (grad_w1,) = torch.autograd.grad(loss, w1, retain_graph=True)
    (grad_b,) = torch.autograd.grad(loss, b, retain_graph=True)
    dz = 1 / (1 + math.exp(-z)) - 1
    assert grad_w1.item() == pytest.approx(1.1 * dz, rel=1e-5) and round(grad_w1.item(), 4) == -0.0898
    assert grad_b.item() == pytest.approx(dz, rel=1e-5) and round(grad_b.item(), 4) == -0.0817
    assert w1.grad is None and b.grad is None  # grad() leaves .grad alone
    loss.backward()
    np.testing.assert_allclose(w1.grad, grad_w1.data)
    np.testing.assert_allclose(b.grad, grad_b.data)
    from autograd.autograd import grad  # the book's `from torch.autograd import grad`

    assert grad is torch.grad is torch.autograd.grad


def test_grad_with_several_inputs_intermediates_and_errors():
    x, unused = leaf([1.0, 2.0]), leaf([3.0])
    hidden = x * 3.0
    out = (hidden * hidden).sum()
    dx, dhidden = torch.grad(out, [x, hidden], retain_graph=True)
    np.testing.assert_allclose(dhidden.data, 2 * hidden.data)
    np.testing.assert_allclose(dx.data, 18 * x.data)
    assert x.grad is None
    with pytest.raises(RuntimeError, match="input 0 is not used to compute the outputs"):
        torch.grad(out, unused, retain_graph=True)
    assert torch.grad(out, [x, unused], allow_unused=True, retain_graph=True)[1] is None
    with pytest.raises(NotImplementedError, match="create_graph=True"):
        torch.grad(out, x, create_graph=True)
    with pytest.raises(RuntimeError, match="input 0 does not require grad"):
        torch.grad(out, torch.tensor([1.0]))
    upstream = np.array([1.0, -1.0])
    (dx2,) = torch.grad(hidden, x, grad_outputs=upstream)  # frees the graph
    np.testing.assert_allclose(dx2.data, 3 * upstream)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        torch.grad(hidden, x, grad_outputs=upstream)


# --------------------------------------------------------------------------------------------
# F.sigmoid, F.logsigmoid, F.binary_cross_entropy(_with_logits), F.mse_loss, F.relu
# --------------------------------------------------------------------------------------------


@given(x=tensors(low=-8, high=8))
@FEW
def test_sigmoid_and_logsigmoid_gradcheck(x):
    np.testing.assert_allclose(F.sigmoid(x).data, 1 / (1 + np.exp(-x.data)), rtol=1e-12)
    np.testing.assert_allclose(F.logsigmoid(x).data, -np.log1p(np.exp(-x.data)), rtol=1e-12)
    assert gradcheck(F.sigmoid, [x])
    assert gradcheck(F.logsigmoid, [x])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_logsigmoid_are_stable_for_large_inputs(dtype):
    x = torch.tensor([-1000.0, -200.0, 0.0, 40.0, 1000.0], dtype=dtype, requires_grad=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is fine
        s, log_s = F.sigmoid(x), F.logsigmoid(x)
        (s.sum() + log_s.sum()).backward()
    np.testing.assert_allclose(s.data, [0.0, math.exp(-200.0) if dtype == np.float64 else 0.0, 0.5, 1.0, 1.0], rtol=1e-6)
    # log(sigmoid(x)) = -log(1 + e^-x): -x for very negative x, -e^-x for large x.
    np.testing.assert_allclose(log_s.data, [-1000.0, -200.0, -math.log(2), -math.exp(-40.0), 0.0], rtol=1e-6)
    assert np.all(np.isfinite(x.grad))


@given(p=tensors(low=0.05, high=0.95), data=st.data())
@FEW
def test_binary_cross_entropy_values_and_gradcheck(p, data):
    y = data.draw(arrays(p.shape, low=0.0, high=1.0))
    elementwise = -(y * np.log(p.data) + (1 - y) * np.log(1 - p.data))
    np.testing.assert_allclose(F.binary_cross_entropy(p, y, reduction="none").data, elementwise, rtol=1e-12)
    np.testing.assert_allclose(F.binary_cross_entropy(p, y).item(), elementwise.mean(), rtol=1e-12)
    np.testing.assert_allclose(F.binary_cross_entropy(p, y, reduction="sum").item(), elementwise.sum(), rtol=1e-12)
    for reduction in ("mean", "sum", "none"):
        assert gradcheck(lambda t: F.binary_cross_entropy(t, y, reduction=reduction), [p])


def test_binary_cross_entropy_edges_and_errors():
    # log(0) is clamped to -100 as in PyTorch: p = 0 for a positive target costs 100.
    assert F.binary_cross_entropy(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0])).item() == pytest.approx(50.0)
    with pytest.raises(ValueError, match="all elements of input should be between 0 and 1"):
        F.binary_cross_entropy(torch.tensor([1.5]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="reduction must be 'mean', 'sum' or 'none', got 'avg'"):
        F.binary_cross_entropy(torch.tensor([0.5]), torch.tensor([1.0]), reduction="avg")
    with pytest.raises(ValueError, match=r"target has shape \(2,\) but input has \(1,\)"):
        F.binary_cross_entropy(torch.tensor([0.5]), torch.tensor([1.0, 0.0]))


@given(x=tensors(low=-6, high=6), data=st.data())
@FEW
def test_binary_cross_entropy_with_logits_equals_sigmoid_then_bce_and_passes_gradcheck(x, data):
    y = data.draw(arrays(x.shape, low=0.0, high=1.0))
    for reduction in ("mean", "sum", "none"):
        np.testing.assert_allclose(F.binary_cross_entropy_with_logits(x, y, reduction=reduction).data,
                                   F.binary_cross_entropy(F.sigmoid(x), y, reduction=reduction).data, rtol=1e-10, atol=1e-12)
        assert gradcheck(lambda t: F.binary_cross_entropy_with_logits(t, y, reduction=reduction), [x])


def test_binary_cross_entropy_with_logits_is_stable():
    x = torch.tensor([100.0, -100.0, 30.0], requires_grad=True)
    loss = F.binary_cross_entropy_with_logits(x, torch.tensor([0.0, 1.0, 1.0]), reduction="none")
    # Wrong by a margin of 100 costs 100; right with logit 30 costs log(1 + e^-30) ~ e^-30.
    np.testing.assert_allclose(loss.data, [100.0, 100.0, math.exp(-30.0)], rtol=1e-5)
    loss.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0, -1.0, -math.exp(-30.0)], rtol=1e-5)


@given(x=tensors(), data=st.data())
@FEW
def test_mse_loss_values_and_gradcheck_in_both_inputs(x, data):
    target = leaf(data.draw(arrays(x.shape)))
    squared = (x.data - target.data) ** 2
    np.testing.assert_allclose(F.mse_loss(x, target).item(), squared.mean(), rtol=1e-12)
    np.testing.assert_allclose(F.mse_loss(x, target, reduction="sum").item(), squared.sum(), rtol=1e-12)
    np.testing.assert_allclose(F.mse_loss(x, target, reduction="none").data, squared, rtol=1e-12)
    for reduction in ("mean", "sum", "none"):
        assert gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction), [x, target])


def test_mse_loss_by_hand_and_errors():
    output = torch.tensor([[0.5]], requires_grad=True)
    loss = F.mse_loss(output, torch.tensor([[0.0]]))  # ch. 4's print_gradients: output vs [[0.]]
    loss.backward()
    assert loss.item() == 0.25 and output.grad.tolist() == [[1.0]]
    assert F.mse_loss(torch.tensor([1.0, 3.0]), [0.0, 0.0], reduction="sum").item() == 10.0
    with pytest.raises(ValueError, match=r"mse_loss: target has shape \(3,\) but input has \(2,\)"):
        F.mse_loss(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0, 3.0]))


@given(x=tensors(away_from=0.0))
@FEW
def test_relu(x):
    np.testing.assert_array_equal(F.relu(x).data, np.maximum(x.data, 0))
    assert gradcheck(F.relu, [x])


# --------------------------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------------------------


def test_save_and_load_a_model_and_optimizer_state(tmp_path):
    from minigpt.optim import AdamW

    rng = np.random.default_rng(0)
    parameters = [torch.tensor(rng.standard_normal((3, 2)).astype(np.float32), requires_grad=True),
                  torch.tensor(rng.standard_normal(2).astype(np.float32), requires_grad=True)]
    optimizer = AdamW(parameters, lr=0.01, weight_decay=0.1)
    for _ in range(2):
        (parameters[0].sum() * 2 + (parameters[1] * parameters[1]).sum()).backward()
        optimizer.step()
        optimizer.zero_grad()
    model_state = {"layer.weight": parameters[0].data, "layer.bias": parameters[1].data}
    path = tmp_path / "model_and_optimizer.pth"
    torch.save({"model_state_dict": model_state, "optimizer_state_dict": optimizer.state_dict()}, path)
    checkpoint = torch.load(path, map_location=torch.device("cpu"), weights_only=True)

    for name, array in model_state.items():
        np.testing.assert_array_equal(checkpoint["model_state_dict"][name], array)
        assert type(checkpoint["model_state_dict"][name]) is np.ndarray
    saved, original = checkpoint["optimizer_state_dict"], optimizer.state_dict()
    assert saved["param_groups"] == original["param_groups"]  # tuples (betas) come back as tuples
    assert set(saved["state"]) == {0, 1}  # int keys stay ints
    for index in (0, 1):
        assert saved["state"][index]["step"] == 2
        np.testing.assert_array_equal(saved["state"][index]["exp_avg_sq"], original["state"][index]["exp_avg_sq"])
    copies = [torch.tensor(p.data.copy(), requires_grad=True) for p in parameters]
    fresh = AdamW(copies, lr=0.5)
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["lr"] == 0.01
    # The resumed optimizer takes exactly the step the original takes.
    for params, opt in ((parameters, optimizer), (copies, fresh)):
        (params[0].sum() * 2 + (params[1] * params[1]).sum()).backward()
        opt.step()
    for original_parameter, resumed in zip(parameters, copies):
        np.testing.assert_array_equal(resumed.data, original_parameter.data)


def test_save_keeps_tensors_plain_values_and_nesting(tmp_path):
    obj = {"weights": torch.tensor([1.0, 2.0]), "nested": [1, 2.5, "text", None, True, (3, [np.arange(3)])],
           "numpy_scalar": np.float32(0.5), 7: {"a.b": np.ones(2)}, "a": {"b": np.zeros(2)}}
    path = tmp_path / "state.safetensors"
    torch.save(obj, path)
    loaded = torch.load(path)
    assert isinstance(loaded["weights"], torch.Tensor) and loaded["weights"].data.tolist() == [1.0, 2.0]
    assert loaded["nested"][:5] == [1, 2.5, "text", None, True] and isinstance(loaded["nested"][5], tuple)
    np.testing.assert_array_equal(loaded["nested"][5][1][0], np.arange(3))
    assert loaded["numpy_scalar"] == 0.5 and set(loaded) == set(obj)
    # "7.a.b" and "a.b" name different arrays although their dotted paths could collide.
    np.testing.assert_array_equal(loaded[7]["a.b"], np.ones(2))
    np.testing.assert_array_equal(loaded["a"]["b"], np.zeros(2))


def test_save_refuses_anything_but_state_dicts(tmp_path):
    path = tmp_path / "refused.pth"
    with pytest.raises(TypeError, match="cannot save a builtins.function at model: only state dicts are saved"):
        torch.save({"model": lambda: 0}, path)
    with pytest.raises(TypeError, match="has dtype object"):
        torch.save({"x": np.array([None, 1])}, path)
    with pytest.raises(TypeError, match="dict keys must be str, int, float, bool or None, got tuple"):
        torch.save({(1, 2): 3}, path)
    assert not path.exists()
    (tmp_path / "pickle.pth").write_bytes(b"\x80\x04K\x01.")  # a pickle of the int 1
    with pytest.raises(ValueError, match="is not a safetensors file written by autograd.save"):
        torch.load(tmp_path / "pickle.pth")
    with pytest.raises(FileNotFoundError):
        torch.load(tmp_path / "missing.pth")
    torch.save({"x": np.ones(1)}, path)
    with pytest.raises(RuntimeError, match="minigpt runs on the CPU only"):
        torch.load(path, map_location="cuda")


def test_save_and_load_through_a_file_object(tmp_path):
    import io

    obj = {"weights": torch.tensor([[1.0, 2.0]]), "step": 3, "moments": [np.arange(4.0)]}
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    assert buffer.getvalue() and not list(tmp_path.iterdir())
    buffer.seek(0)
    loaded = torch.load(buffer)
    assert loaded["weights"].data.tolist() == [[1.0, 2.0]] and loaded["step"] == 3
    np.testing.assert_array_equal(loaded["moments"][0], np.arange(4.0))
    with open(tmp_path / "opened.pth", "wb") as handle:  # an open binary file is a file object too
        torch.save(obj, handle)
    assert torch.load(tmp_path / "opened.pth")["step"] == 3
    with pytest.raises(ValueError, match="the BytesIO object is not a safetensors file written by autograd.save"):
        torch.load(io.BytesIO(b"\x80\x04K\x01."))
    with pytest.raises(ValueError, match="open the file in binary mode"):
        torch.load(io.StringIO("text"))
    with pytest.raises(TypeError, match=r"save: f must be a file path .* or a binary file object with .write\(\)"):
        torch.save(obj, 3)
    with pytest.raises(TypeError, match=r"load: f must be a file path .* with \.read\(\) \(such as io.BytesIO\), got NoneType"):
        torch.load(None)


def test_save_and_load_keep_the_shape_of_0_d_and_non_contiguous_arrays(tmp_path):
    obj = {"z": torch.tensor(3.0), "count": np.array(7), "transposed": np.arange(6.0).reshape(2, 3).T}
    torch.save(obj, tmp_path / "s.pth")
    loaded = torch.load(tmp_path / "s.pth")
    assert loaded["z"].shape == () and loaded["z"].item() == 3.0
    assert loaded["count"].shape == () and loaded["count"] == 7
    np.testing.assert_array_equal(loaded["transposed"], obj["transposed"])
    torch.save(torch.tensor(2.5), tmp_path / "bare.pth")  # a bare tensor at the top
    bare = torch.load(tmp_path / "bare.pth")
    assert isinstance(bare, torch.Tensor) and bare.shape == () and bare.item() == 2.5


def test_save_into_a_missing_folder_names_the_folder(tmp_path):
    missing = tmp_path / "no" / "such" / "dir"
    with pytest.raises(FileNotFoundError, match=f"save: cannot write .*x.pth: no such folder: {missing}$"):
        torch.save({"x": np.ones(1)}, missing / "x.pth")
    assert not (tmp_path / "no").exists()


def test_in_place_under_no_grad_keeps_saved_arrays_and_parameter_memory():
    weight = leaf([1.0, -2.0])
    memory = weight.data
    hidden = weight * 2.0  # Mul saved weight's array for backward
    with torch.no_grad():
        weight.fill_(0.5)  # a leaf: written in place (an optimizer's view stays valid)
        hidden[0] = 10.0  # a non-leaf: written into a copy, the graph is not corrupted
    assert weight.data is memory and memory.tolist() == [0.5, 0.5]
    assert hidden.data.tolist() == [10.0, -4.0] and hidden.grad_fn is not None


def test_torch_nn_before_importing_minigpt_says_which_import_provides_it():
    # `import autograd as torch; torch.nn.functional...` alone said "has no attribute 'nn'.
    # Did you mean: 'nan'?". A fresh interpreter: this one has imported minigpt.nn already.
    code = ("import autograd as torch\n"
            "for name in ('nn', 'optim', 'utils', 'no_such_name'):\n"
            "    try:\n"
            "        getattr(torch, name)\n"
            "    except AttributeError as error:\n"
            "        print(error)\n"
            "from minigpt import nn\n"
            "print(torch.nn is nn, torch.optim.AdamW.__name__)\n")
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    for line, name in zip(printed, ("nn", "optim", "utils")):
        assert f"no attribute '{name}' yet" in line and "from minigpt import nn" in line, line
    assert printed[3] == "module 'autograd' has no attribute 'no_such_name'"
    assert printed[4] == "True AdamW"
