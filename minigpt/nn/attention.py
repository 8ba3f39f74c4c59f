"""Self-attention, from the book's first simple version to the fast multi-head layer of GPT-2.

Chapter 3 of the book builds attention in steps; each step is here as a small teaching class that
uses primitive engine ops exactly as the book's code does (`@`, `.T`, `masked_fill`, `softmax`):

    simplified_self_attention   3.3   no trainable weights: scores are dot products of the inputs
    SelfAttention_v1            3.4   trainable W_query, W_key, W_value as plain Parameters
    SelfAttention_v2            3.4   the same with Linear layers
    CausalAttention             3.5   hide future tokens (-inf before the softmax) and dropout
    MultiHeadAttentionWrapper   3.6.1 several CausalAttention heads side by side, concatenated

`MultiHeadAttention` (3.6.2) is the layer the GPT model uses. It computes the same function as the
wrapper followed by an output projection, but splits each projection into heads by reshaping
instead of running a module per head, and runs the attention core as one fused engine op,
`scaled_dot_product_attention`, whose backward rule never builds the (B, H, T, T) graph of
primitive ops. The tests check that the teaching classes and MultiHeadAttention agree.

For generation it keeps a key/value cache (the book's chapter-4 bonus, `use_cache`, `reset_cache`):
the keys and values of tokens already seen are stored in arrays preallocated for the whole
sequence, so each new token costs one small step instead of a pass over the whole prefix.

Shape letters: B batch, T tokens (num_tokens), H heads, D head size (d_out / H).

References: Raschka, "Build a Large Language Model (From Scratch)", chapter 3; Vaswani et al.
2017, "Attention Is All You Need", eq. 1 (scaled dot-product) and section 3.2.2 (multi-head).
"""

from __future__ import annotations

import numpy as np

from autograd import Tensor, cat
from autograd import functional as F
from autograd import random as _random
from minigpt.nn.layers import Dropout, Linear, _check_size, _generator
from minigpt.nn.module import Module, ModuleList, Parameter

__all__ = [
    "simplified_self_attention",
    "SelfAttention_v1",
    "SelfAttention_v2",
    "CausalAttention",
    "MultiHeadAttentionWrapper",
    "MultiHeadAttention",
]


def simplified_self_attention(inputs: Tensor) -> Tensor:
    """Self-attention without trainable weights (book section 3.3.2).

        attn_scores = inputs @ inputs^T;  attn_weights = softmax(attn_scores);  context = attn_weights @ inputs

    Args:
        inputs: float tensor (T, d): one embedding per token.

    Returns:
        The context vectors (T, d): each token's weighted average of all tokens.
    """
    attn_scores = inputs @ inputs.T  # (T, d) @ (d, T) -> (T, T)
    attn_weights = F.softmax(attn_scores, dim=-1)  # each row sums to 1
    return attn_weights @ inputs  # (T, T) @ (T, d) -> (T, d)


class SelfAttention_v1(Module):
    """Scaled dot-product self-attention with trainable weight matrices (book listing 3.1).

        queries = x W_q,  keys = x W_k,  values = x W_v
        context = softmax(queries keys^T / sqrt(d_out)) values

    Args:
        d_in: input embedding size; d_out: size of queries, keys, values and the output.
        rng: generator (or int seed); the weights are drawn from U[0, 1) as the book's torch.rand.

    Attributes:
        W_query, W_key, W_value: Parameters (d_in, d_out), used as x @ W (not Linear's x W^T).

    Shapes: x (T, d_in) -> (T, d_out), or with a batch dimension (B, T, d_in) -> (B, T, d_out).
    """

    def __init__(self, d_in: int, d_out: int, rng=None):
        super().__init__()
        rng = _generator(rng)
        self.W_query = Parameter(_random.uniform(rng, (d_in, d_out), dtype=np.float32))
        self.W_key = Parameter(_random.uniform(rng, (d_in, d_out), dtype=np.float32))
        self.W_value = Parameter(_random.uniform(rng, (d_in, d_out), dtype=np.float32))

    def forward(self, x: Tensor) -> Tensor:
        keys = x @ self.W_key  # (T, d_in) @ (d_in, d_out) -> (T, d_out)
        queries = x @ self.W_query
        values = x @ self.W_value
        attn_scores = queries @ keys.transpose(-2, -1)  # (T, d_out) @ (d_out, T) -> (T, T), the omegas
        # Dividing by sqrt(d_out) keeps the scores' variance near 1, so the softmax does not
        # saturate into near one-hot weights with vanishing gradients (Vaswani et al. 2017, 3.2.1).
        attn_weights = F.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        return attn_weights @ values  # (T, T) @ (T, d_out) -> (T, d_out)


class SelfAttention_v2(Module):
    """SelfAttention_v1 with Linear layers for the projections (book listing 3.2).

    Args:
        d_in, d_out: as SelfAttention_v1. qkv_bias: give the three projections a bias.
        rng: generator (or int seed) for the Linear weights; None: the default generator.
        init: "pytorch" (default, as the book's nn.Linear) or "gpt2".

    Attributes:
        W_query, W_key, W_value: Linear(d_in, d_out); weight shape (d_out, d_in).

    Shapes: (T, d_in) -> (T, d_out), or (B, T, d_in) -> (B, T, d_out).
    """

    def __init__(self, d_in: int, d_out: int, qkv_bias: bool = False, rng=None, init: str = "pytorch"):
        super().__init__()
        rng = _generator(rng)
        self.W_query = Linear(d_in, d_out, bias=qkv_bias, rng=rng, init=init)
        self.W_key = Linear(d_in, d_out, bias=qkv_bias, rng=rng, init=init)
        self.W_value = Linear(d_in, d_out, bias=qkv_bias, rng=rng, init=init)

    def forward(self, x: Tensor) -> Tensor:
        keys = self.W_key(x)  # (T, d_in) -> (T, d_out)
        queries = self.W_query(x)
        values = self.W_value(x)
        attn_scores = queries @ keys.transpose(-2, -1)  # (T, T)
        attn_weights = F.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        return attn_weights @ values  # (T, d_out)


class CausalAttention(Module):
    """Single-head causal self-attention with dropout on the attention weights (book listing 3.3).

    Token t may attend only to tokens 0..t: the scores of later tokens are set to -inf before the
    softmax, so they get weight exactly 0 (and gradient exactly 0).

    Args:
        d_in, d_out: embedding sizes. context_length: the longest sequence (size of the mask).
        dropout: probability of dropping an attention weight in training.
        qkv_bias: bias on the three projections. rng: generator (or int seed) for the weights;
            None: the default generator. init: "pytorch" (default) or "gpt2", as Linear.

    Attributes:
        W_query, W_key, W_value: Linear(d_in, d_out). dropout: Dropout(dropout).
        mask: bool (context_length, context_length), True above the diagonal (the future). The
            book registers it as a buffer; here it is a plain array, not part of the state dict.

    Shapes: x (B, T, d_in) -> (B, T, d_out), T <= context_length.
    """

    _ignored_state_keys = ("mask",)

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float, qkv_bias: bool = False, rng=None, init: str = "pytorch"):
        super().__init__()
        rng = _generator(rng)
        self.d_out = d_out
        self.context_length = _check_size(context_length, "context_length", "CausalAttention")
        self.W_query = Linear(d_in, d_out, bias=qkv_bias, rng=rng, init=init)
        self.W_key = Linear(d_in, d_out, bias=qkv_bias, rng=rng, init=init)
        self.W_value = Linear(d_in, d_out, bias=qkv_bias, rng=rng, init=init)
        self.dropout = Dropout(dropout)
        self.mask = np.triu(np.ones((context_length, context_length), dtype=bool), k=1)

    def forward(self, x: Tensor) -> Tensor:
        batch_size, num_tokens, d_in = x.shape
        _check_num_tokens(num_tokens, self.context_length, type(self).__name__)
        keys = self.W_key(x)  # (B, T, d_in) -> (B, T, d_out)
        queries = self.W_query(x)
        values = self.W_value(x)
        attn_scores = queries @ keys.transpose(1, 2)  # (B, T, d_out) @ (B, d_out, T) -> (B, T, T)
        # -inf, not a large negative number: exp(-inf) is exactly 0, so no future token leaks in.
        attn_scores = attn_scores.masked_fill(self.mask[:num_tokens, :num_tokens], -np.inf)
        attn_weights = F.softmax(attn_scores / keys.shape[-1] ** 0.5, dim=-1)
        attn_weights = self.dropout(attn_weights)
        return attn_weights @ values  # (B, T, T) @ (B, T, d_out) -> (B, T, d_out)


class MultiHeadAttentionWrapper(Module):
    """`num_heads` independent CausalAttention heads, outputs concatenated (book listing 3.4).

    Shapes: x (B, T, d_in) -> (B, T, num_heads * d_out): each head gives d_out channels.

    Attributes:
        heads: ModuleList of CausalAttention.
    """

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float, num_heads: int, qkv_bias: bool = False, rng=None, init: str = "pytorch"):
        super().__init__()
        rng = _generator(rng)
        self.heads = ModuleList(
            [CausalAttention(d_in, d_out, context_length, dropout, qkv_bias, rng=rng, init=init) for _ in range(num_heads)]
        )

    def forward(self, x: Tensor) -> Tensor:
        return cat([head(x) for head in self.heads], dim=-1)  # H x (B, T, d_out) -> (B, T, H * d_out)


class MultiHeadAttention(Module):
    """Causal multi-head self-attention, the attention layer of GPT-2 (book listing 3.5).

        Q = x W_query^T, K = x W_key^T, V = x W_value^T, each split into H heads of size D
        head_h = dropout(softmax(mask(Q_h K_h^T / sqrt(D)))) V_h
        out = concat(head_1, ..., head_H) W_out^T + b_out

    Args:
        d_in: input size. d_out: output size, split into num_heads heads of d_out // num_heads.
        context_length: the longest sequence this layer accepts.
        dropout: probability of dropping an attention weight in training (0 in eval mode).
        num_heads: number of heads H.
        qkv_bias: bias on the query, key and value projections (False in the book's
            GPT_CONFIG_124M; True in OpenAI's GPT-2 weights).
        rng: generator (or int seed) for the weights; None: the default generator.
        init: "pytorch" (default, as the book's nn.Linear layers) or "gpt2" (GPTModel's).

    Attributes:
        W_query, W_key, W_value: Linear(d_in, d_out, bias=qkv_bias).
        out_proj: Linear(d_out, d_out), the output projection that mixes the heads.
        dropout: Dropout(dropout); its `rng` draws the attention-weight masks.
        cache_k, cache_v: the KV cache, float (B, H, max_seq_len, D) arrays preallocated by the
            first `forward(x, use_cache=True)` after `reset_cache()`; None when empty. Plain
            arrays, not part of the state dict (the book's non-persistent buffers).
        ptr_current_pos: how many cache slots are filled: the absolute position of the next token.

    Forward: `forward(x, use_cache=False, padding_mask=None)`. With `use_cache=True` (inference
    only: no graph is kept for the cache and no dropout is applied), the keys and values of x's
    tokens are written into the next cache slots and x's queries attend over every cached token;
    x's tokens are taken to follow the cached ones (book ch. 4 bonus, `gpt_with_kv_cache.py`).
    `padding_mask`, bool (B, >= T_k), True for cache slots that hold padding (left-padded batches
    of prompts of different lengths): those keys are hidden from every query.

    Shapes: x (B, T, d_in) -> (B, T, d_out), T <= context_length (with the cache: the cached
    tokens plus T at most `max_seq_len`).

    Raises:
        ValueError: d_out not divisible by num_heads; in forward, T > context_length or an input
            that is not (B, T, d_in); a full cache, or a cached call whose batch size differs from
            the cache's.

    NOTE: the three projections stay three Linear calls, as in the book. One product with the
    weights concatenated to (3 d_out, d_in) was measured slower for GPT-2 small (batch 2 x 256,
    forward + backward of this layer: 73 ms separate vs 77 ms fused, 2 threads): the copies that
    concatenating the weights and splitting the result add cost more than the larger product saves.
    """

    _ignored_state_keys = ("mask",)  # the book's causal-mask buffer: implied by causal=True here

    def __init__(self, d_in: int, d_out: int, context_length: int, dropout: float, num_heads: int, qkv_bias: bool = False, rng=None, init: str = "pytorch"):
        super().__init__()
        num_heads = _check_size(num_heads, "num_heads", "MultiHeadAttention")
        if d_out % num_heads != 0:
            raise ValueError(f"MultiHeadAttention: d_out ({d_out}) must be divisible by num_heads ({num_heads})")
        rng = _generator(rng)
        self.d_in = d_in
        self.d_out = d_out
        self.num_heads = num_heads
        self.head_dim = d_out // num_heads
        self.context_length = _check_size(context_length, "context_length", "MultiHeadAttention")
        self.W_query = Linear(d_in, d_out, bias=qkv_bias, rng=rng, init=init)
        self.W_key = Linear(d_in, d_out, bias=qkv_bias, rng=rng, init=init)
        self.W_value = Linear(d_in, d_out, bias=qkv_bias, rng=rng, init=init)
        self.out_proj = Linear(d_out, d_out, rng=rng, init=init)
        self.dropout = Dropout(dropout)
        self.reset_cache()

    def reset_cache(self, max_seq_len: int | None = None) -> None:
        """Empty the KV cache; the next `forward(x, use_cache=True)` starts a new sequence (ch. 4 bonus).

        Args:
            max_seq_len: how many tokens the cache holds (its slots are allocated at the next
                cached call, for that call's batch size); None or more than context_length: all
                context_length positions.
        """
        if max_seq_len is not None:
            max_seq_len = _check_size(max_seq_len, "max_seq_len", "MultiHeadAttention.reset_cache")
        self.cache_k = self.cache_v = None  # (B, H, max_seq_len, D), allocated by the next cached call
        self.ptr_current_pos = 0  # slots filled so far: the absolute position of the next token
        self.max_seq_len = min(max_seq_len or self.context_length, self.context_length)

    def forward(self, x: Tensor, use_cache: bool = False, padding_mask: np.ndarray | None = None) -> Tensor:
        if x.ndim != 3 or x.shape[-1] != self.d_in:
            raise ValueError(f"MultiHeadAttention: x must have shape (batch, num_tokens, {self.d_in}), got {x.shape}")
        batch_size, num_tokens, _ = x.shape
        _check_num_tokens(num_tokens, self.context_length, type(self).__name__)
        heads, head_dim = self.num_heads, self.head_dim
        queries = self.W_query(x)  # (B, T, d_in) -> (B, T, d_out)
        keys = self.W_key(x)
        values = self.W_value(x)
        # Split the d_out channels into H heads of D: a reshape and a transpose, no copy.
        queries = queries.view(batch_size, num_tokens, heads, head_dim).transpose(1, 2)  # (B, T, d_out) -> (B, T, H, D) -> (B, H, T, D)
        keys = keys.view(batch_size, num_tokens, heads, head_dim).transpose(1, 2)
        values = values.view(batch_size, num_tokens, heads, head_dim).transpose(1, 2)
        if use_cache:
            context_vec = self._cached_attention(queries, keys, values, padding_mask)  # (B, H, T, D)
        else:
            dropout_p = self.dropout.p if self.training else 0.0
            context_vec = F.scaled_dot_product_attention(
                queries, keys, values, causal=True, dropout_p=dropout_p, rng=self.dropout.rng
            )  # (B, H, T, D)
        # Put the heads side by side again: (B, H, T, D) -> (B, T, H, D) -> (B, T, d_out).
        context_vec = context_vec.transpose(1, 2).reshape(batch_size, num_tokens, self.d_out)
        return self.out_proj(context_vec)  # (B, T, d_out) -> (B, T, d_out)

    def _cached_attention(self, queries: Tensor, keys_new: Tensor, values_new: Tensor, padding_mask) -> Tensor:
        """Write this call's keys and values into the cache, then attend over every cached token.

        queries, keys_new, values_new: (B, H, T, D) of the T new tokens, which sit at the absolute
        positions ptr_current_pos ... ptr_current_pos + T - 1: query i sees the keys up to its own
        position (the causal mask aligned bottom-right, as the book's mask[ptr:ptr + T, :T_k]).
        padding_mask: None or bool (B, T_k) over the cache's slots, True for padding (hidden).
        """
        batch_size, heads, num_tokens, head_dim = queries.shape
        start, stop = self.ptr_current_pos, self.ptr_current_pos + num_tokens
        if self.cache_k is None or self.cache_k.shape[0] != batch_size or self.cache_k.dtype != queries.dtype:
            if start != 0:
                raise ValueError(
                    f"MultiHeadAttention: the KV cache holds {start} tokens of a batch of {self.cache_k.shape[0]} "
                    f"{self.cache_k.dtype} rows; got {batch_size} {queries.dtype} rows: call reset_kv_cache() first"
                )
            # Preallocated once per sequence: each step writes one slot, nothing is concatenated.
            shape = (batch_size, heads, self.max_seq_len, head_dim)
            self.cache_k, self.cache_v = np.empty(shape, queries.dtype), np.empty(shape, queries.dtype)
        if stop > self.max_seq_len:
            raise ValueError(
                f"MultiHeadAttention: the KV cache holds {start} of at most {self.max_seq_len} tokens and cannot take "
                f"{num_tokens} more (context_length={self.context_length}); reset it (reset_kv_cache()) and run the "
                "last context_length tokens again, as generate() does"
            )
        self.cache_k[:, :, start:stop] = keys_new.data  # (B, H, T, D) into slots [start, stop)
        self.cache_v[:, :, start:stop] = values_new.data
        self.ptr_current_pos = stop
        keys = Tensor(self.cache_k[:, :, :stop])  # (B, H, T_k, D), a view of the filled slots
        values = Tensor(self.cache_v[:, :, :stop])
        if padding_mask is None and (start == 0 or num_tokens == 1):
            # The common cases: the prompt into an empty cache (T_q = T_k, the ordinary causal
            # mask), or one new token, which sees every cached key (no mask at all).
            return F.scaled_dot_product_attention(queries, keys, values, causal=start == 0)
        # New tokens after cached ones, or padded rows: the book's masked_fill with an explicit mask.
        query_positions = np.arange(start, stop)[:, None]  # (T, 1)
        hidden = np.arange(stop)[None, :] > query_positions  # (T, T_k): keys after each query's position
        if padding_mask is not None:
            hidden = hidden | padding_mask[:, None, None, :stop]  # (B, 1, T, T_k)
        attn_scores = queries @ keys.transpose(2, 3)  # (B, H, T, D) @ (B, H, D, T_k) -> (B, H, T, T_k)
        attn_scores = attn_scores.masked_fill(hidden, -np.inf)  # a row with every key hidden gets weights 0
        attn_weights = F.softmax(attn_scores / head_dim**0.5, dim=-1)
        return attn_weights @ values  # (B, H, T, T_k) @ (B, H, T_k, D) -> (B, H, T, D)


def _check_num_tokens(num_tokens: int, context_length: int, layer: str) -> None:
    if num_tokens > context_length:
        raise ValueError(f"{layer}: the input has {num_tokens} tokens, more than context_length={context_length}")
