"""The book's GPT (chapters 3-4) in plain eager PyTorch, with the chapter-4 bonus KV cache.

A reference for speed comparisons only: minigpt never imports it, and it runs under a Python that
has torch. It is written the way the book writes its model (separate W_query / W_key / W_value
projections, attention scores masked with -inf, LayerNorm and GELU written out), so a benchmark
compares minigpt with what a reader of the book runs. The KV cache concatenates new keys and
values onto the old ones, as the book's `gpt_with_kv_cache.py` does.

Shapes: B batch, T tokens, C embedding width, H heads, D = C / H head width, V vocabulary.
"""

import math

import torch
from torch import nn

# name -> (vocab_size, context_length, emb_dim, n_heads, n_layers), as minigpt's presets.
CONFIGS = {
    "gpt2-small": (50257, 1024, 768, 12, 12),
    "book-124M": (50257, 256, 768, 12, 12),
    "gpt2-medium": (50257, 1024, 1024, 16, 24),
    "mid": (50257, 256, 384, 6, 6),
    "char": (65, 64, 128, 4, 4),
}


class LayerNorm(nn.Module):
    """Layer normalisation with the book's names (scale, shift) and biased variance."""

    def __init__(self, emb_dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.scale = nn.Parameter(torch.ones(emb_dim))
        self.shift = nn.Parameter(torch.zeros(emb_dim))

    def forward(self, x):
        mean = x.mean(dim=-1, keepdim=True)
        var = x.var(dim=-1, keepdim=True, unbiased=False)
        return self.scale * (x - mean) / torch.sqrt(var + self.eps) + self.shift


class GELU(nn.Module):
    """GELU, tanh approximation (Hendrycks & Gimpel 2016), as GPT-2 and the book."""

    def forward(self, x):
        return 0.5 * x * (1 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)))


class MultiHeadAttention(nn.Module):
    """Causal multi-head attention; `use_cache=True` appends this call's keys/values to a cache."""

    def __init__(self, emb_dim: int, context_length: int, n_heads: int, drop_rate: float, qkv_bias: bool):
        super().__init__()
        self.n_heads, self.head_dim = n_heads, emb_dim // n_heads
        self.W_query = nn.Linear(emb_dim, emb_dim, bias=qkv_bias)
        self.W_key = nn.Linear(emb_dim, emb_dim, bias=qkv_bias)
        self.W_value = nn.Linear(emb_dim, emb_dim, bias=qkv_bias)
        self.out_proj = nn.Linear(emb_dim, emb_dim)
        self.dropout = nn.Dropout(drop_rate)
        self.register_buffer("mask", torch.triu(torch.ones(context_length, context_length, dtype=torch.bool), 1), persistent=False)
        self.cache_k = self.cache_v = None

    def reset_cache(self):
        self.cache_k = self.cache_v = None

    def forward(self, x, use_cache: bool = False):
        B, T, C = x.shape
        split = lambda t: t.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)  # (B, T, C) -> (B, H, T, D)
        queries, keys, values = split(self.W_query(x)), split(self.W_key(x)), split(self.W_value(x))
        if use_cache:
            if self.cache_k is not None:
                keys = torch.cat([self.cache_k, keys], dim=2)
                values = torch.cat([self.cache_v, values], dim=2)
            self.cache_k, self.cache_v = keys, values
        T_k = keys.shape[2]
        scores = queries @ keys.transpose(2, 3)  # (B, H, T, T_k)
        # Query i sits at absolute position T_k - T + i and may see keys up to it.
        mask = self.mask[T_k - T:T_k, :T_k]
        scores = scores.masked_fill(mask, float("-inf"))
        weights = self.dropout(torch.softmax(scores / self.head_dim ** 0.5, dim=-1))
        context = (weights @ values).transpose(1, 2).reshape(B, T, C)
        return self.out_proj(context)


class TransformerBlock(nn.Module):
    def __init__(self, emb_dim, context_length, n_heads, drop_rate, qkv_bias):
        super().__init__()
        self.att = MultiHeadAttention(emb_dim, context_length, n_heads, drop_rate, qkv_bias)
        self.ff = nn.Sequential(nn.Linear(emb_dim, 4 * emb_dim), GELU(), nn.Linear(4 * emb_dim, emb_dim))
        self.norm1, self.norm2 = LayerNorm(emb_dim), LayerNorm(emb_dim)
        self.drop_shortcut = nn.Dropout(drop_rate)

    def forward(self, x, use_cache: bool = False):
        x = x + self.drop_shortcut(self.att(self.norm1(x), use_cache=use_cache))
        return x + self.drop_shortcut(self.ff(self.norm2(x)))


class GPTModel(nn.Module):
    """The book's GPTModel (listing 4.7) with the KV-cache bonus's `use_cache` and `reset_kv_cache`."""

    def __init__(self, vocab_size, context_length, emb_dim, n_heads, n_layers, drop_rate=0.0, qkv_bias=False):
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, emb_dim)
        self.pos_emb = nn.Embedding(context_length, emb_dim)
        self.drop_emb = nn.Dropout(drop_rate)
        self.trf_blocks = nn.ModuleList(TransformerBlock(emb_dim, context_length, n_heads, drop_rate, qkv_bias)
                                        for _ in range(n_layers))
        self.final_norm = LayerNorm(emb_dim)
        self.out_head = nn.Linear(emb_dim, vocab_size, bias=False)
        self.current_pos = 0

    def reset_kv_cache(self):
        for block in self.trf_blocks:
            block.att.reset_cache()
        self.current_pos = 0

    def forward(self, in_idx, use_cache: bool = False):
        B, T = in_idx.shape
        start = self.current_pos if use_cache else 0
        positions = torch.arange(start, start + T, device=in_idx.device)
        if use_cache:
            self.current_pos += T
        x = self.drop_emb(self.tok_emb(in_idx) + self.pos_emb(positions))
        for block in self.trf_blocks:
            x = block(x, use_cache=use_cache)
        return self.out_head(self.final_norm(x))


def build(name: str, drop_rate: float = 0.0, qkv_bias: bool = False, seed: int = 123) -> GPTModel:
    """A model of one of `CONFIGS`, float32, seeded."""
    torch.manual_seed(seed)
    vocab_size, context_length, emb_dim, n_heads, n_layers = CONFIGS[name]
    return GPTModel(vocab_size, context_length, emb_dim, n_heads, n_layers, drop_rate, qkv_bias)
