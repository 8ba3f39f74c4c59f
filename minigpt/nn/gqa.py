"""Grouped-query attention (GQA), the attention of Llama 3 and Qwen3, with rotary positions and a KV cache.

Multi-head attention gives every one of the H query heads its own key and value head. GQA keeps
H query heads but only `num_kv_groups` key/value heads: each of them is shared by a group of
G = H / num_kv_groups query heads (query head h reads kv head h // G, the book's
`repeat_interleave`). The key and value projections shrink by G, and so does the KV cache, which
is what limits generation memory. Queries and keys are rotated by their positions (RoPE,
`minigpt.nn.rope`) instead of adding position embeddings; Qwen3 also RMS-normalises each query
and key head before the rotation (`qk_norm`).

    queries = rope(q_norm(x W_query^T))    (B, H, T, D)
    keys    = rope(k_norm(x W_key^T))      (B, KV, T, D)     values = x W_value^T  (B, KV, T, D)
    head h = softmax(mask(q_h k_{h//G}^T / sqrt(D))) v_{h//G}
    out = concat(heads) W_out^T

The KV cache (book ch. 4 bonus, issue 14; the book's kv_cache/qwen3.py) stores the keys (after
RoPE) and values of the KV heads only: (B, KV, max_seq_len, D) each, preallocated per sequence,
as `MultiHeadAttention`'s.

Shape letters: B batch, T tokens, C d_in (emb_dim), H num_heads, KV num_kv_groups,
G = H / KV queries per kv head, D head_dim.

References: Ainslie et al. 2023, "GQA: Training Generalized Multi-Query Transformer Models from
Multi-Head Checkpoints"; Raschka, LLMs-from-scratch ch04/04_gqa, pkg/llms_from_scratch/llama3.py
and qwen3.py (`GroupedQueryAttention`); Hugging Face `LlamaAttention`, `Qwen3Attention`.
"""

from __future__ import annotations

import numpy as np

from autograd import Tensor
from autograd import functional as F
from minigpt.nn.layers import Linear, _check_size, _generator
from minigpt.nn.module import Module
from minigpt.nn.rms_norm import Qwen3RMSNorm
from minigpt.nn.rope import apply_rope

__all__ = ["GroupedQueryAttention"]


class GroupedQueryAttention(Module):
    """Causal grouped-query self-attention with rotary positions and an optional per-head q/k RMSNorm.

    Args:
        d_in: input (and output) size C.
        num_heads: H, the query heads.
        num_kv_groups: KV, the key/value heads; must divide num_heads.
        head_dim: D; None: d_out // num_heads (or d_in // num_heads).
        qk_norm: RMS-normalise every query and key head (Qwen3), eps 1e-6.
        dtype: accepted for the book's signature (the weights are float32; `model.to(np.float64)`).
        d_out: the book's Llama argument (= num_heads * head_dim); None: from head_dim.
        context_length: the most tokens the KV cache holds (None: no cache limit but the tables').
        rng: generator or int seed for the weights. init: "pytorch" or "gpt2" (see Linear).

    Attributes:
        W_query: Linear(C, H*D), W_key, W_value: Linear(C, KV*D), out_proj: Linear(H*D, C), no biases.
        q_norm, k_norm: Qwen3RMSNorm(D) or None.
        cache_k, cache_v: (B, KV, max_seq_len, D) arrays of the cached keys and values, or None;
            ptr_current_pos: the slots filled.

    Forward: `forward(x, cos, sin, use_cache=False, positions=0, padding_mask=None)`; cos and sin
    are the model's RoPE tables (`compute_rope_params`), `positions` the position of x's first
    token (an int) or the positions of every token ((T,) or (B, T) ints, for left-padded rows).
    With `use_cache=True` (inference only, no graph is kept for the cache) x's keys and values are
    written into the next cache slots and x's queries attend over every cached token; padding_mask,
    bool (B, >= T_k), hides cache slots that hold padding.

    Shapes: x (B, T, C) -> (B, T, C).

    Raises:
        ValueError: num_heads not divisible by num_kv_groups, head_dim unknown or odd; in forward,
            x not (B, T, C); a full cache, or a cached call whose batch differs from the cache's.
    """

    def __init__(self, d_in: int, num_heads: int, num_kv_groups: int, head_dim: int | None = None, qk_norm: bool = False,
                 dtype=None, d_out: int | None = None, context_length: int | None = None, rng=None, init: str = "pytorch"):
        super().__init__()
        d_in = _check_size(d_in, "d_in", "GroupedQueryAttention")
        num_heads = _check_size(num_heads, "num_heads", "GroupedQueryAttention")
        num_kv_groups = _check_size(num_kv_groups, "num_kv_groups", "GroupedQueryAttention")
        if num_heads % num_kv_groups:
            raise ValueError(f"GroupedQueryAttention: num_heads ({num_heads}) must be divisible by num_kv_groups ({num_kv_groups})")
        if head_dim is None:
            width = d_out if d_out is not None else d_in
            if width % num_heads:
                raise ValueError(f"GroupedQueryAttention: {'d_out' if d_out is not None else 'd_in'} ({width}) must be "
                                 f"divisible by num_heads ({num_heads}) when head_dim is not given")
            head_dim = width // num_heads
        head_dim = _check_size(head_dim, "head_dim", "GroupedQueryAttention")
        if d_out is not None and d_out != num_heads * head_dim:
            raise ValueError(f"GroupedQueryAttention: d_out ({d_out}) must be num_heads * head_dim = {num_heads * head_dim}")
        rng = _generator(rng)
        self.d_in, self.num_heads, self.num_kv_groups, self.head_dim = d_in, num_heads, num_kv_groups, head_dim
        self.group_size = num_heads // num_kv_groups  # G query heads per kv head
        self.d_out = num_heads * head_dim
        self.context_length = context_length
        self.W_query = Linear(d_in, self.d_out, bias=False, rng=rng, init=init)
        self.W_key = Linear(d_in, num_kv_groups * head_dim, bias=False, rng=rng, init=init)
        self.W_value = Linear(d_in, num_kv_groups * head_dim, bias=False, rng=rng, init=init)
        self.out_proj = Linear(self.d_out, d_in, bias=False, rng=rng, init=init)
        if qk_norm:
            self.q_norm, self.k_norm = Qwen3RMSNorm(head_dim, eps=1e-6), Qwen3RMSNorm(head_dim, eps=1e-6)
        else:
            self.q_norm = self.k_norm = None
        self.reset_cache()

    def reset_cache(self, max_seq_len: int | None = None) -> None:
        """Empty the KV cache; the next cached call starts a new sequence (at most max_seq_len tokens,
        None: context_length)."""
        limit = max_seq_len or self.context_length
        if limit is not None and self.context_length is not None:
            limit = min(limit, self.context_length)
        self.cache_k = self.cache_v = None  # (B, KV, max_seq_len, D), allocated by the next cached call
        self.ptr_current_pos = 0
        self.max_seq_len = limit

    def forward(self, x: Tensor, cos, sin, use_cache: bool = False, positions=0, padding_mask=None) -> Tensor:
        if x.ndim != 3 or x.shape[-1] != self.d_in:
            raise ValueError(f"GroupedQueryAttention: x must have shape (batch, num_tokens, {self.d_in}), got {x.shape}")
        b, num_tokens, _ = x.shape
        heads, kv_heads, head_dim = self.num_heads, self.num_kv_groups, self.head_dim
        queries = self.W_query(x).view(b, num_tokens, heads, head_dim).transpose(1, 2)  # (B, T, H*D) -> (B, H, T, D)
        keys = self.W_key(x).view(b, num_tokens, kv_heads, head_dim).transpose(1, 2)  # (B, T, KV*D) -> (B, KV, T, D)
        values = self.W_value(x).view(b, num_tokens, kv_heads, head_dim).transpose(1, 2)  # (B, KV, T, D)
        if self.q_norm is not None:
            queries = self.q_norm(queries)  # each head's D channels normalised on their own
            keys = self.k_norm(keys)
        queries = apply_rope(queries, cos, sin, offset=positions)  # rotate by position
        keys = apply_rope(keys, cos, sin, offset=positions)
        if use_cache:
            context = self._cached_attention(queries, keys, values, padding_mask)  # (B, H, T, D)
        else:
            context = F.scaled_dot_product_attention(
                queries, self._expand(keys), self._expand(values), causal=True)  # (B, H, T, D)
        context = context.transpose(1, 2).reshape(b, num_tokens, self.d_out)  # (B, H, T, D) -> (B, T, H*D)
        return self.out_proj(context)  # (B, T, H*D) -> (B, T, C)

    def _expand(self, kv: Tensor) -> Tensor:
        """(B, KV, T, D) -> (B, H, T, D): each kv head repeated for its G query heads (repeat_interleave)."""
        if self.group_size == 1:
            return kv
        b, kv_heads, tokens, head_dim = kv.shape
        expanded = kv.unsqueeze(2).expand(b, kv_heads, self.group_size, tokens, head_dim)  # (B, KV, G, T, D), a view
        return expanded.reshape(b, self.num_heads, tokens, head_dim)  # head h = kv head h // G

    def extra_repr(self) -> str:
        return (f"d_in={self.d_in}, num_heads={self.num_heads}, num_kv_groups={self.num_kv_groups}, "
                f"head_dim={self.head_dim}, qk_norm={self.q_norm is not None}")

    def _cached_attention(self, queries: Tensor, keys_new: Tensor, values_new: Tensor, padding_mask) -> Tensor:
        """Write the new keys and values into the cache, then attend over every cached token.

        queries (B, H, T, D), keys_new / values_new (B, KV, T, D): the T new tokens, at slots
        ptr_current_pos ... ptr_current_pos + T - 1; query i sees the slots up to its own.
        """
        b, heads, num_tokens, head_dim = queries.shape
        start, stop = self.ptr_current_pos, self.ptr_current_pos + num_tokens
        if self.cache_k is None or self.cache_k.shape[0] != b or self.cache_k.dtype != queries.dtype:
            if start != 0:
                raise ValueError(f"GroupedQueryAttention: the KV cache holds {start} tokens of a batch of "
                                 f"{self.cache_k.shape[0]}; got {b} {queries.dtype} rows: call reset_kv_cache() first")
            capacity = self.max_seq_len if self.max_seq_len is not None else num_tokens
            shape = (b, self.num_kv_groups, capacity, head_dim)  # only the kv heads are stored
            self.cache_k, self.cache_v = np.empty(shape, queries.dtype), np.empty(shape, queries.dtype)
        if stop > self.cache_k.shape[2]:
            raise ValueError(f"GroupedQueryAttention: the KV cache holds {start} of at most {self.cache_k.shape[2]} tokens "
                             f"and cannot take {num_tokens} more; reset it (reset_kv_cache()) and run the last tokens again")
        self.cache_k[:, :, start:stop] = keys_new.data  # (B, KV, T, D) into slots [start, stop)
        self.cache_v[:, :, start:stop] = values_new.data
        self.ptr_current_pos = stop
        keys, values = Tensor(self.cache_k[:, :, :stop]), Tensor(self.cache_v[:, :, :stop])  # (B, KV, T_k, D) views
        if padding_mask is None and num_tokens == 1:
            # One new token sees every cached key: its G query heads per kv head become G rows of
            # one (B, KV, G, D) query matrix, so the cache is read as it is, never repeated.
            grouped = queries.reshape(b, self.num_kv_groups, self.group_size, head_dim)  # (B, H, 1, D) -> (B, KV, G, D)
            context = F.scaled_dot_product_attention(grouped, keys, values, causal=False)  # (B, KV, G, D)
            return context.reshape(b, heads, 1, head_dim)
        keys, values = self._expand(keys), self._expand(values)  # (B, H, T_k, D)
        if padding_mask is None and start == 0:
            return F.scaled_dot_product_attention(queries, keys, values, causal=True)  # the prompt: plain causal
        # New tokens after cached ones, or padded rows: the book's masked_fill with an explicit mask.
        hidden = np.arange(stop)[None, :] > np.arange(start, stop)[:, None]  # (T, T_k): keys after each query
        if padding_mask is not None:
            hidden = hidden | padding_mask[:, None, None, :stop]  # (B, 1, T, T_k)
        scores = queries @ keys.transpose(2, 3)  # (B, H, T, T_k)
        weights = F.softmax(scores.masked_fill(hidden, -np.inf) / head_dim**0.5, dim=-1)
        return weights @ values  # (B, H, T, D)
