"""Tests of the attention layers: the book's chapter-3 teaching classes against each other and
against the fast MultiHeadAttention (same weights copied across), causality, dropout, gradients.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import autograd
from autograd import Tensor
from autograd import functional as F
from minigpt.nn import (
    CausalAttention,
    Dropout,
    MultiHeadAttention,
    MultiHeadAttentionWrapper,
    SelfAttention_v1,
    SelfAttention_v2,
    simplified_self_attention,
)

# The book's running example (section 3.3): "Your journey starts with one step", 3-d embeddings.
INPUTS = np.array(
    [
        [0.43, 0.15, 0.89],  # Your
        [0.55, 0.87, 0.66],  # journey
        [0.57, 0.85, 0.64],  # starts
        [0.22, 0.58, 0.33],  # with
        [0.77, 0.25, 0.10],  # one
        [0.05, 0.80, 0.55],  # step
    ],
    dtype=np.float32,
)


def random_input(shape, seed=0, dtype=np.float64):
    return Tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype), requires_grad=True)


def randomize(module, seed=0, scale=0.5):
    """Give every parameter (biases included) random float64 values, so nothing is trivially 0."""
    module.to(np.float64)
    rng = np.random.default_rng(seed)
    for parameter in module.parameters():
        parameter.data[...] = rng.standard_normal(parameter.shape) * scale
    return module


def book_multi_head_attention(mha: MultiHeadAttention, x: Tensor) -> Tensor:
    """MultiHeadAttention's forward as the book's listing 3.5 writes it, from primitive ops."""
    b, num_tokens, _ = x.shape
    heads, head_dim = mha.num_heads, mha.head_dim
    keys = mha.W_key(x).view(b, num_tokens, heads, head_dim).transpose(1, 2)
    queries = mha.W_query(x).view(b, num_tokens, heads, head_dim).transpose(1, 2)
    values = mha.W_value(x).view(b, num_tokens, heads, head_dim).transpose(1, 2)
    attn_scores = queries @ keys.transpose(2, 3)
    mask_bool = np.triu(np.ones((num_tokens, num_tokens), dtype=bool), k=1)
    attn_scores = attn_scores.masked_fill(mask_bool, -np.inf)
    attn_weights = F.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
    attn_weights = mha.dropout(attn_weights)
    context_vec = (attn_weights @ values).transpose(1, 2)
    context_vec = context_vec.reshape(b, num_tokens, mha.d_out)
    return mha.out_proj(context_vec)


def copy_wrapper_into_multi_head(wrapper: MultiHeadAttentionWrapper, mha: MultiHeadAttention) -> None:
    """Stack the wrapper's per-head projections into MultiHeadAttention's and make out_proj the
    identity, so both compute the same function (head h owns rows h*D:(h+1)*D)."""
    for name in ("W_query", "W_key", "W_value"):
        getattr(mha, name).weight.data[...] = np.concatenate([getattr(h, name).weight.data for h in wrapper.heads])
        if getattr(mha, name).bias is not None:
            getattr(mha, name).bias.data[...] = np.concatenate([getattr(h, name).bias.data for h in wrapper.heads])
    mha.out_proj.weight.data[...] = np.eye(mha.d_out)
    mha.out_proj.bias.data[...] = 0


# ---- the teaching classes ------------------------------------------------------------------------


def test_simplified_self_attention_gives_the_books_numbers():
    context = simplified_self_attention(Tensor(INPUTS)).data
    scores = INPUTS @ INPUTS.T
    weights = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(context, weights @ INPUTS, rtol=1e-6)
    np.testing.assert_allclose(context[1], [0.4419, 0.6515, 0.5683], atol=1e-4)  # book section 3.3.1


def test_self_attention_v1_and_v2_agree_with_copied_weights():
    # The book's exercise 3.1: v1 computes x @ W, v2's Linear computes x @ W^T.
    v2 = SelfAttention_v2(3, 2, rng=789)
    v1 = SelfAttention_v1(3, 2, rng=0)
    assert (v1.W_query.data >= 0).all() and (v1.W_query.data < 1).all()  # torch.rand's U[0, 1)
    for name in ("W_query", "W_key", "W_value"):
        getattr(v1, name).data[...] = getattr(v2, name).weight.data.T
    x = Tensor(INPUTS)
    np.testing.assert_allclose(v1(x).data, v2(x).data, rtol=1e-6, atol=1e-7)
    assert v1(x).shape == (6, 2)


def test_self_attention_v1_matches_numpy():
    v1 = SelfAttention_v1(3, 2, rng=123)
    q, k, v = (INPUTS @ getattr(v1, name).data for name in ("W_query", "W_key", "W_value"))
    scores = q @ k.T / np.sqrt(2)
    weights = np.exp(scores) / np.exp(scores).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(v1(Tensor(INPUTS)).data, weights @ v, rtol=1e-5)


def test_causal_attention_hides_the_future():
    attention = CausalAttention(3, 2, context_length=6, dropout=0.0, rng=0)
    batch = Tensor(np.stack([INPUTS, INPUTS]))
    out = attention(batch).data
    changed = np.stack([INPUTS, INPUTS])
    changed[:, 4:] += 10.0  # change the last two tokens only
    out_changed = attention(Tensor(changed)).data
    np.testing.assert_array_equal(out[:, :4], out_changed[:, :4])
    assert not np.allclose(out[:, 4:], out_changed[:, 4:])


def test_causal_attention_gradients():
    attention = randomize(CausalAttention(3, 4, context_length=5, dropout=0.0, qkv_bias=True))
    params = list(attention.parameters())
    autograd.gradcheck(lambda x, *p: attention(x), [random_input((2, 5, 3))] + params)


def test_wrapper_concatenates_heads():
    wrapper = MultiHeadAttentionWrapper(3, 2, context_length=6, dropout=0.0, num_heads=2, rng=123)
    batch = Tensor(np.stack([INPUTS, INPUTS]))
    out = wrapper(batch)
    assert out.shape == (2, 6, 4)
    np.testing.assert_array_equal(out.data[..., 2:], wrapper.heads[1](batch).data)


# ---- MultiHeadAttention against the teaching classes ---------------------------------------------


@settings(max_examples=12, deadline=None)
@given(
    batch=st.integers(1, 2),
    num_tokens=st.integers(1, 6),
    num_heads=st.integers(1, 3),
    head_dim=st.integers(1, 4),
    qkv_bias=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_multi_head_attention_equals_the_wrapper_of_causal_heads(batch, num_tokens, num_heads, head_dim, qkv_bias, seed):
    d_in = 5
    wrapper = randomize(MultiHeadAttentionWrapper(d_in, head_dim, 6, 0.0, num_heads, qkv_bias=qkv_bias), seed)
    mha = randomize(MultiHeadAttention(d_in, head_dim * num_heads, 6, 0.0, num_heads, qkv_bias=qkv_bias), seed + 1)
    copy_wrapper_into_multi_head(wrapper, mha)
    x = random_input((batch, num_tokens, d_in), seed)
    dout = np.random.default_rng(seed).standard_normal((batch, num_tokens, head_dim * num_heads))

    x.grad = None
    mha(x).backward(dout)
    fast_dx = x.grad
    x.grad = None
    expected = wrapper(x)
    expected.backward(dout)
    np.testing.assert_allclose(mha(x).data, expected.data, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fast_dx, x.grad, rtol=1e-10, atol=1e-12)
    for name in ("W_query", "W_key", "W_value"):
        stacked = np.concatenate([getattr(head, name).weight.grad for head in wrapper.heads])
        np.testing.assert_allclose(getattr(mha, name).weight.grad, stacked, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("training", [False, True])
def test_multi_head_attention_equals_the_books_primitive_version(training):
    # With dropout in training mode both draw one mask of shape (B, H, T, T) from the same
    # generator state, so even the dropped weights agree.
    mha = randomize(MultiHeadAttention(6, 6, context_length=8, dropout=0.3, num_heads=3, qkv_bias=True), 4)
    mha.train(training)
    x = random_input((2, 7, 6), 1)
    dout = np.random.default_rng(2).standard_normal((2, 7, 6))
    state = autograd.Generator().manual_seed(99).get_state()

    mha.dropout.rng.set_state(state)
    fast = mha(x)
    fast.backward(dout)
    fast_grads = [x.grad] + [p.grad for p in mha.parameters()]
    mha.zero_grad()
    x.grad = None

    mha.dropout.rng.set_state(state)
    book = book_multi_head_attention(mha, x)
    book.backward(dout)
    book_grads = [x.grad] + [p.grad for p in mha.parameters()]
    np.testing.assert_allclose(fast.data, book.data, rtol=1e-12, atol=1e-13)
    for fast_grad, book_grad in zip(fast_grads, book_grads):
        np.testing.assert_allclose(fast_grad, book_grad, rtol=1e-10, atol=1e-12)


def test_multi_head_attention_gradients_match_finite_differences():
    mha = randomize(MultiHeadAttention(4, 6, context_length=5, dropout=0.0, num_heads=2, qkv_bias=True), 3)
    params = list(mha.parameters())
    autograd.gradcheck(lambda x, *p: mha(x), [random_input((2, 5, 4))] + params)


def test_multi_head_attention_is_causal_and_float32():
    mha = MultiHeadAttention(8, 8, context_length=10, dropout=0.0, num_heads=2, rng=0)
    x = np.random.default_rng(0).standard_normal((2, 10, 8)).astype(np.float32)
    out = mha(Tensor(x))
    assert out.dtype == np.float32 and out.shape == (2, 10, 8)
    changed = x.copy()
    changed[:, 7:] = 0.0
    np.testing.assert_array_equal(mha(Tensor(changed)).data[:, :7], out.data[:, :7])


def test_multi_head_attention_dropout_only_in_training():
    mha = MultiHeadAttention(8, 8, context_length=10, dropout=0.5, num_heads=2, rng=0)
    x = Tensor(np.random.default_rng(0).standard_normal((2, 10, 8)).astype(np.float32))
    mha.eval()
    np.testing.assert_array_equal(mha(x).data, mha(x).data)
    mha.train()
    assert not np.array_equal(mha(x).data, mha(x).data)
    assert isinstance(mha.dropout, Dropout) and mha.dropout.p == 0.5


def test_multi_head_attention_state_dict_names_and_ignored_book_mask():
    mha = MultiHeadAttention(4, 4, context_length=3, dropout=0.0, num_heads=2, qkv_bias=False)
    assert list(mha.state_dict()) == [
        "W_query.weight", "W_key.weight", "W_value.weight", "out_proj.weight", "out_proj.bias",
    ]
    state = dict(mha.state_dict())
    state["mask"] = np.triu(np.ones((3, 3)), k=1)  # the book's registered buffer
    mha.load_state_dict(state)


def test_multi_head_attention_errors_name_the_numbers():
    with pytest.raises(ValueError, match=r"d_out \(6\) must be divisible by num_heads \(4\)"):
        MultiHeadAttention(4, 6, context_length=3, dropout=0.0, num_heads=4)
    mha = MultiHeadAttention(4, 4, context_length=3, dropout=0.0, num_heads=2)
    with pytest.raises(ValueError, match="4 tokens, more than context_length=3"):
        mha(Tensor(np.zeros((1, 4, 4), dtype=np.float32)))
    with pytest.raises(ValueError, match=r"\(batch, num_tokens, 4\)"):
        mha(Tensor(np.zeros((4, 4), dtype=np.float32)))
