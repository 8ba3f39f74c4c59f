"""Chapter 3, "Coding attention mechanisms", run in the book's style on minigpt.

The toy inputs ("Your journey starts with one step") are fixed numbers, so every score, weight and
context vector of the simplified attention (3.3) is checked against the book's printout. The
trainable versions start from `torch.rand` / `nn.Linear` draws, which are NumPy's here: they are
checked by what must hold whatever the draws (shapes, rows summing to 1, causality, the book's
classes agreeing with minigpt's).
"""

import numpy as np
import pytest

import autograd as torch
from minigpt import nn
from minigpt.teaching import softmax_naive

inputs = torch.tensor(
    [[0.43, 0.15, 0.89],  # Your     (x^1)
     [0.55, 0.87, 0.66],  # journey  (x^2)
     [0.57, 0.85, 0.64],  # starts   (x^3)
     [0.22, 0.58, 0.33],  # with     (x^4)
     [0.77, 0.25, 0.10],  # one      (x^5)
     [0.05, 0.80, 0.55]]  # step     (x^6)
)

ATTN_SCORES = [
    [0.9995, 0.9544, 0.9422, 0.4753, 0.4576, 0.6310],
    [0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865],
    [0.9422, 1.4754, 1.4570, 0.8296, 0.7154, 1.0605],
    [0.4753, 0.8434, 0.8296, 0.4937, 0.3474, 0.6565],
    [0.4576, 0.7070, 0.7154, 0.3474, 0.6654, 0.2935],
    [0.6310, 1.0865, 1.0605, 0.6565, 0.2935, 0.9450],
]
ATTN_WEIGHTS = [
    [0.2098, 0.2006, 0.1981, 0.1242, 0.1220, 0.1452],
    [0.1385, 0.2379, 0.2333, 0.1240, 0.1082, 0.1581],
    [0.1390, 0.2369, 0.2326, 0.1242, 0.1108, 0.1565],
    [0.1435, 0.2074, 0.2046, 0.1462, 0.1263, 0.1720],
    [0.1526, 0.1958, 0.1975, 0.1367, 0.1879, 0.1295],
    [0.1385, 0.2184, 0.2128, 0.1420, 0.0988, 0.1896],
]
CONTEXT_VECS = [
    [0.4421, 0.5931, 0.5790], [0.4419, 0.6515, 0.5683], [0.4431, 0.6496, 0.5671],
    [0.4304, 0.6298, 0.5510], [0.4671, 0.5910, 0.5266], [0.4177, 0.6503, 0.5645],
]


def close(tensor, expected, atol=6e-5):
    """The book prints 4 decimals: agree to its rounding."""
    np.testing.assert_allclose(np.asarray(tensor.data if isinstance(tensor, torch.Tensor) else tensor), expected, atol=atol)


def test_3_3_1_attention_for_one_query():
    query = inputs[1]
    attn_scores_2 = torch.empty(inputs.shape[0])
    for i, x_i in enumerate(inputs):
        attn_scores_2[i] = torch.dot(x_i, query)
    close(attn_scores_2, [0.9544, 1.4950, 1.4754, 0.8434, 0.7070, 1.0865])

    res = 0.0
    for idx, element in enumerate(inputs[0]):
        res += inputs[0][idx] * query[idx]
    close(res, 0.9544)
    close(torch.dot(inputs[0], query), 0.9544)

    attn_weights_2_tmp = attn_scores_2 / attn_scores_2.sum()
    close(attn_weights_2_tmp, [0.1455, 0.2278, 0.2249, 0.1285, 0.1077, 0.1656])
    close(attn_weights_2_tmp.sum(), 1.0)

    attn_weights_2_naive = softmax_naive(attn_scores_2)
    close(attn_weights_2_naive, ATTN_WEIGHTS[1])
    attn_weights_2 = torch.softmax(attn_scores_2, dim=0)
    close(attn_weights_2, ATTN_WEIGHTS[1])
    close(attn_weights_2.sum(), 1.0, atol=1e-6)

    context_vec_2 = torch.zeros(query.shape)
    for i, x_i in enumerate(inputs):
        context_vec_2 += attn_weights_2[i] * x_i
    close(context_vec_2, [0.4419, 0.6515, 0.5683])


def test_3_3_2_attention_for_all_inputs():
    attn_scores = torch.empty(6, 6)
    for i, x_i in enumerate(inputs):
        for j, x_j in enumerate(inputs):
            attn_scores[i, j] = torch.dot(x_i, x_j)
    close(attn_scores, ATTN_SCORES)
    attn_scores = inputs @ inputs.T
    close(attn_scores, ATTN_SCORES)
    attn_weights = torch.softmax(attn_scores, dim=-1)
    close(attn_weights, ATTN_WEIGHTS)
    close(attn_weights.sum(dim=-1), [1.0] * 6, atol=1e-6)
    all_context_vecs = attn_weights @ inputs
    close(all_context_vecs, CONTEXT_VECS)
    close(nn.simplified_self_attention(inputs), CONTEXT_VECS)  # minigpt's function for 3.3


def trainable_weights_step_by_step():
    """Section 3.4.1's cells; returns the weights and the second context vector."""
    x_2 = inputs[1]
    d_in, d_out = inputs.shape[1], 2
    torch.manual_seed(123)
    W_query = torch.nn.Parameter(torch.rand(d_in, d_out), requires_grad=False)
    W_key = torch.nn.Parameter(torch.rand(d_in, d_out), requires_grad=False)
    W_value = torch.nn.Parameter(torch.rand(d_in, d_out), requires_grad=False)
    query_2 = x_2 @ W_query
    keys = inputs @ W_key
    values = inputs @ W_value
    assert query_2.shape == (2,) and keys.shape == values.shape == (6, 2)
    keys_2 = keys[1]
    attn_score_22 = query_2.dot(keys_2)
    attn_scores_2 = query_2 @ keys.T
    close(attn_scores_2[1], attn_score_22.item(), atol=1e-6)
    d_k = keys.shape[1]
    attn_weights_2 = torch.softmax(attn_scores_2 / d_k**0.5, dim=-1)
    close(attn_weights_2.sum(), 1.0, atol=1e-6)
    context_vec_2 = attn_weights_2 @ values
    assert context_vec_2.shape == (2,)
    return W_query, W_key, W_value, context_vec_2


class SelfAttention_v1(nn.Module):
    """Listing 3.1 as the book types it."""

    def __init__(self, d_in, d_out):
        super().__init__()
        self.W_query = nn.Parameter(torch.rand(d_in, d_out))
        self.W_key = nn.Parameter(torch.rand(d_in, d_out))
        self.W_value = nn.Parameter(torch.rand(d_in, d_out))

    def forward(self, x):
        keys = x @ self.W_key
        queries = x @ self.W_query
        values = x @ self.W_value
        attn_scores = queries @ keys.T
        attn_weights = torch.softmax(attn_scores / keys.shape[-1]**0.5, dim=-1)
        return attn_weights @ values


class SelfAttention_v2(nn.Module):
    """Listing 3.2 as the book types it."""

    def __init__(self, d_in, d_out, qkv_bias=False):
        super().__init__()
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)

    def forward(self, x):
        keys = self.W_key(x)
        queries = self.W_query(x)
        values = self.W_value(x)
        attn_scores = queries @ keys.T
        attn_weights = torch.softmax(attn_scores / keys.shape[-1]**0.5, dim=-1)
        return attn_weights @ values


def test_listings_3_1_and_3_2_self_attention_classes():
    d_in, d_out = 3, 2
    W_query, W_key, W_value, context_vec_2 = trainable_weights_step_by_step()
    assert not W_query.requires_grad and W_query.shape == (3, 2)
    torch.manual_seed(123)
    sa_v1 = SelfAttention_v1(d_in, d_out)
    # Same seed, same draws in the same order: row 2 is the context vector computed by hand.
    close(sa_v1(inputs)[1], context_vec_2.data, atol=1e-6)
    assert sa_v1(inputs).shape == (6, 2)
    assert [name for name, _ in sa_v1.named_parameters()] == ["W_query", "W_key", "W_value"]

    torch.manual_seed(789)
    sa_v2 = SelfAttention_v2(d_in, d_out)
    out_v2 = sa_v2(inputs)
    assert out_v2.shape == (6, 2) and out_v2.requires_grad
    # Exercise 3.1: v1 with v2's weights transposed computes the same.
    sa_v1.W_query.data[...] = sa_v2.W_query.weight.data.T
    sa_v1.W_key.data[...] = sa_v2.W_key.weight.data.T
    sa_v1.W_value.data[...] = sa_v2.W_value.weight.data.T
    close(sa_v1(inputs), out_v2.data, atol=1e-6)
    # minigpt's own classes of the same name compute the same function.
    mine = nn.SelfAttention_v2(d_in, d_out)
    mine.load_state_dict(sa_v2.state_dict())
    close(mine(inputs), out_v2.data, atol=1e-6)


def test_3_5_causal_masks_and_dropout():
    torch.manual_seed(789)
    sa_v2 = SelfAttention_v2(3, 2)
    queries = sa_v2.W_query(inputs)
    keys = sa_v2.W_key(inputs)
    attn_scores = queries @ keys.T
    attn_weights = torch.softmax(attn_scores / keys.shape[-1]**0.5, dim=-1)

    context_length = attn_scores.shape[0]
    mask_simple = torch.tril(torch.ones(context_length, context_length))
    assert mask_simple.tolist() == [[1.0] * (i + 1) + [0.0] * (5 - i) for i in range(6)]
    masked_simple = attn_weights * mask_simple
    masked_simple_norm = masked_simple / masked_simple.sum(dim=-1, keepdim=True)

    mask = torch.triu(torch.ones(context_length, context_length), diagonal=1)
    masked = attn_scores.masked_fill(mask.bool(), -torch.inf)
    assert np.isneginf(masked.data[np.triu_indices(6, 1)]).all()
    attn_weights = torch.softmax(masked / keys.shape[-1]**0.5, dim=-1)
    # The book's point: renormalising after masking equals masking with -inf before the softmax.
    close(attn_weights, masked_simple_norm.data, atol=1e-6)
    close(attn_weights[0], [1, 0, 0, 0, 0, 0], atol=0)

    torch.manual_seed(123)
    dropout = torch.nn.Dropout(0.5)
    example = torch.ones(6, 6)
    dropped = dropout(example)
    assert set(np.unique(dropped.data)) <= {0.0, 2.0} and 0 < (dropped.data == 0).sum() < 36  # scaled by 1/(1-p)
    torch.manual_seed(123)
    np.testing.assert_array_equal(dropout(example).data, dropped.data)  # the default generator, reseeded


class CausalAttention(nn.Module):
    """Listing 3.3 as the book types it: register_buffer and the in-place masked_fill_."""

    def __init__(self, d_in, d_out, context_length, dropout, qkv_bias=False):
        super().__init__()
        self.d_out = d_out
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length), diagonal=1))

    def forward(self, x):
        b, num_tokens, d_in = x.shape
        keys = self.W_key(x)
        queries = self.W_query(x)
        values = self.W_value(x)
        attn_scores = queries @ keys.transpose(1, 2)
        attn_scores.masked_fill_(self.mask.bool()[:num_tokens, :num_tokens], -torch.inf)
        attn_weights = torch.softmax(attn_scores / keys.shape[-1]**0.5, dim=-1)
        attn_weights = self.dropout(attn_weights)
        return attn_weights @ values


class MultiHeadAttentionWrapper(nn.Module):
    """Listing 3.4 as the book types it."""

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__()
        self.heads = nn.ModuleList([CausalAttention(d_in, d_out, context_length, dropout, qkv_bias) for _ in range(num_heads)])

    def forward(self, x):
        return torch.cat([head(x) for head in self.heads], dim=-1)


class MultiHeadAttention(nn.Module):
    """Listing 3.5 as the book types it."""

    def __init__(self, d_in, d_out, context_length, dropout, num_heads, qkv_bias=False):
        super().__init__()
        assert d_out % num_heads == 0, "d_out must be divisible by num_heads"
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.W_query = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_key = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.W_value = nn.Linear(d_in, d_out, bias=qkv_bias)
        self.out_proj = nn.Linear(d_out, d_out)
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length), diagonal=1))

    def forward(self, x):
        b, num_tokens, d_in = x.shape
        keys = self.W_key(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        values = self.W_value(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        queries = self.W_query(x).view(b, num_tokens, self.num_heads, self.head_dim).transpose(1, 2)
        attn_scores = queries @ keys.transpose(2, 3)
        mask_bool = self.mask.bool()[:num_tokens, :num_tokens]
        attn_scores.masked_fill_(mask_bool, -torch.inf)
        attn_weights = torch.softmax(attn_scores / keys.shape[-1]**0.5, dim=-1)
        attn_weights = self.dropout(attn_weights)
        context_vec = (attn_weights @ values).transpose(1, 2)
        context_vec = context_vec.contiguous().view(b, num_tokens, self.d_out)
        return self.out_proj(context_vec)


batch = torch.stack((inputs, inputs), dim=0)


def test_listing_3_3_causal_attention_class():
    assert batch.shape == (2, 6, 3)
    torch.manual_seed(123)
    ca = CausalAttention(3, 2, batch.shape[1], 0.0)
    context_vecs = ca(batch)
    assert context_vecs.shape == (2, 6, 2)
    close(context_vecs[0], context_vecs[1].data, atol=0)
    # Causal: the first token attends only to itself, so its context vector is its value vector.
    close(context_vecs[0, 0], ca.W_value(inputs[0]).data, atol=1e-6)
    # The mask is a buffer: in the state dict, not a parameter.
    assert "mask" in ca.state_dict() and "mask" not in dict(ca.named_parameters())
    # minigpt's CausalAttention, given the same weights, computes the same.
    mine = nn.CausalAttention(3, 2, 6, 0.0)
    mine.load_state_dict({k: v for k, v in ca.state_dict().items() if k != "mask"})
    close(mine(batch), context_vecs.data, atol=1e-6)
    context_vecs.sum().backward()  # gradients flow through the in-place masked_fill_
    assert ca.W_query.weight.grad.shape == (2, 3)


def test_listing_3_4_and_3_5_multi_head_attention():
    torch.manual_seed(123)
    mha = MultiHeadAttentionWrapper(3, 2, batch.shape[1], 0.0, num_heads=2)
    context_vecs = mha(batch)
    assert context_vecs.shape == (2, 6, 4)
    close(context_vecs[:, :, :2], mha.heads[0](batch).data, atol=0)

    torch.manual_seed(123)
    mha = MultiHeadAttention(3, 2, batch.shape[1], 0.0, num_heads=2)
    context_vecs = mha(batch)
    assert context_vecs.shape == (2, 6, 2)
    mine = nn.MultiHeadAttention(3, 2, 6, 0.0, num_heads=2)
    mine.load_state_dict(mha.state_dict())  # the book's "mask" buffer is accepted and skipped
    close(mine(batch), context_vecs.data, atol=1e-6)


def test_3_6_2_batched_matrix_products():
    a = torch.tensor([[[[0.2745, 0.6584, 0.2775, 0.8573],
                        [0.8993, 0.0390, 0.9268, 0.7388],
                        [0.7179, 0.7058, 0.9156, 0.4340]],
                       [[0.0772, 0.3565, 0.1479, 0.5331],
                        [0.4066, 0.2318, 0.4545, 0.9737],
                        [0.4606, 0.5159, 0.4220, 0.5786]]]])
    expected = [[[1.3208, 1.1631, 1.2879], [1.1631, 2.2150, 1.8424], [1.2879, 1.8424, 2.0402]],
                [[0.4391, 0.7003, 0.5903], [0.7003, 1.3737, 1.0620], [0.5903, 1.0620, 0.9912]]]
    close(a @ a.transpose(2, 3), [expected])
    first_head = a[0, 0, :, :]
    close(first_head @ first_head.T, expected[0])
    second_head = a[0, 1, :, :]
    close(second_head @ second_head.T, expected[1])


def test_masked_fill_in_place_refuses_a_leaf_that_needs_gradients():
    leaf = torch.zeros(2, 2, requires_grad=True)
    with pytest.raises(RuntimeError):
        leaf.masked_fill_(torch.ones(2, 2).bool(), 1.0)
