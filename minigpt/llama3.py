"""Llama 3 from scratch (the book's chapter-5 bonus, ch05/07_gpt_to_llama): `Llama3Model`, its configs and presets.

From GPT-2 to Llama 3, layer by layer (the book's notebook walks the same path):

    GPT-2 (model.py)                          Llama 3 (this file)
    tok_emb + pos_emb (learned positions)     tok_emb only; RoPE rotates queries and keys (nn/rope.py)
    LayerNorm (centre, scale, shift)          RMSNorm (scale only, nn/rms_norm.py)
    MultiHeadAttention, qkv bias optional     GroupedQueryAttention, no biases (nn/gqa.py)
    FeedForward: Linear -> GELU -> Linear     SwiGLU: fc3(silu(fc1 x) * fc2 x) (nn/swiglu.py)
    dropout                                    none

    token ids (B, T) -> tok_emb -> n_layers x [x + att(norm1(x)); x + ff(norm2(x))]
                     -> final_norm -> out_head -> logits (B, T, V)

`Llama3Model(cfg)` takes the book's config dict (`LLAMA32_CONFIG_1B`, its keys: vocab_size,
context_length, emb_dim, n_heads, n_layers, hidden_dim, n_kv_groups, rope_base, rope_freq, dtype)
or a preset name (`PRESETS`: "llama3.2-1b", "llama3.2-3b", and the small CPU models
"llama3-tiny" and "llama3-char"); attribute names and state-dict keys are the book's
(`trf_blocks.0.att.W_query.weight`, `trf_blocks.0.norm1.weight`, `final_norm.weight`, ...).
Like GPTModel it has the KV cache (`forward(ids, use_cache=True)`, `reset_kv_cache`), so
`minigpt.generate.generate` and the CLI run it; `Llama3Model.from_pretrained(folder)` reads a
Hugging Face `LlamaForCausalLM` safetensors checkpoint (`minigpt/hf_llama.py`).

The weights are float32 (float64 after `model.to(np.float64)`); a config's bfloat16 `dtype`
is accepted and computes in float32.

Shape letters: B batch, T tokens, C emb_dim, V vocab_size.

References: Raschka, LLMs-from-scratch ch05/07_gpt_to_llama and pkg/llms_from_scratch/llama3.py
(Llama3Model, LLAMA32_CONFIG_1B); Touvron et al. 2023, "LLaMA"; Grattafiori et al. 2024, "The
Llama 3 Herd of Models"; Hugging Face `LlamaForCausalLM` (initializer_range 0.02).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping

import numpy as np

import autograd
from autograd import Tensor
from minigpt.nn.gqa import GroupedQueryAttention
from minigpt.nn.layers import Embedding, Linear, _generator
from minigpt.nn.module import Module, ModuleList
from minigpt.nn.rms_norm import RMSNorm
from minigpt.nn.rope import compute_rope_params
from minigpt.nn.swiglu import SwiGLUFeedForward as FeedForward

__all__ = ["LLAMA32_CONFIG_1B", "LLAMA32_CONFIG_3B", "PRESETS", "Llama3Config", "Llama3Model", "TransformerBlock", "FeedForward",
           "GroupedQueryAttention", "get_llama3_config"]

LLAMA32_CONFIG_1B = {
    "vocab_size": 128_256,           # Vocabulary size
    "context_length": 131_072,       # Context length that was used to train the model
    "emb_dim": 2048,                 # Embedding dimension
    "n_heads": 32,                   # Number of attention heads
    "n_layers": 16,                  # Number of layers
    "hidden_dim": 8192,              # Size of the intermediate dimension in FeedForward
    "n_kv_groups": 8,                # Key-Value groups for grouped-query attention
    "rope_base": 500_000.0,          # The base in RoPE's "theta"
    "dtype": autograd.bfloat16,      # Lower-precision dtype of the released weights (computed in float32 here)
    "rope_freq": {                   # RoPE frequency scaling
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_context_length": 8192,
    },
}

LLAMA32_CONFIG_3B = dict(LLAMA32_CONFIG_1B, emb_dim=3072, n_heads=24, n_layers=28)

PRESETS = {
    "llama3.2-1b": dict(LLAMA32_CONFIG_1B, tie_weights=True),  # 1.24B parameters, the head tied
    "llama3.2-3b": dict(LLAMA32_CONFIG_3B, tie_weights=True),
    # Small models that train on a CPU in minutes, the sizes of GPTModel's "tiny" and "char".
    "llama3-tiny": dict(vocab_size=50257, context_length=128, emb_dim=128, n_heads=4, n_layers=2, hidden_dim=384,
                        n_kv_groups=2, rope_base=500_000.0, rope_freq=None, dtype=np.float32, tie_weights=True),
    "llama3-char": dict(vocab_size=65, context_length=64, emb_dim=128, n_heads=4, n_layers=4, hidden_dim=384,
                        n_kv_groups=2, rope_base=10_000.0, rope_freq=None, dtype=np.float32, tie_weights=False),
}

_REQUIRED = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "hidden_dim", "n_kv_groups", "rope_base")
_OPTIONAL = {"rope_freq": None, "dtype": np.float32, "head_dim": None, "qk_norm": False, "tie_weights": False,
             "drop_rate": 0.0, "qkv_bias": False}


class Llama3Config(dict):
    """The book's config dict, also readable by attribute (`cfg.emb_dim`, as a GPTConfig), so that
    code written for GPTModel (generation, the CLI) reads either model's config."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"the config has no key {name!r}; keys: {', '.join(self)}") from None

    def to_dict(self) -> dict:
        """A JSON-ready copy: the dtype by its name ("float32", "bfloat16")."""
        dtype = self.get("dtype")
        name = getattr(dtype, "__name__", None) or (None if dtype is None else str(dtype).replace("torch.", ""))
        return dict(self, dtype=name)


def get_llama3_config(cfg, presets: Mapping = PRESETS, required=_REQUIRED, model: str = "Llama3Model", **overrides) -> Llama3Config:
    """The validated config dict of a preset name or the book's config dict, with every optional key.

    Optional keys (their defaults): rope_freq (None), dtype (float32), head_dim (None:
    emb_dim // n_heads), qk_norm (False), tie_weights (False: a separate out_head), and
    drop_rate / qkv_bias, which must be 0 / False (these models have no dropout and no biases).

    Raises:
        KeyError: unknown preset name, missing or unknown keys (all named).
        ValueError: a size that is not a positive integer, n_heads not divisible by n_kv_groups,
            an odd head_dim, rope_base <= 0, drop_rate or qkv_bias set.
        TypeError: cfg neither a name nor a mapping.
    """
    if isinstance(cfg, str):
        if cfg not in presets:
            raise KeyError(f"{model}: unknown preset {cfg!r}; presets: {', '.join(presets)}")
        cfg = presets[cfg]
    if not isinstance(cfg, Mapping):
        raise TypeError(f"{model}: cfg must be a preset name or a config dict, got {type(cfg).__name__}")
    cfg = dict(cfg, **overrides)
    missing = [key for key in required if key not in cfg]
    unknown = [key for key in cfg if key not in _REQUIRED and key not in _OPTIONAL]
    if missing or unknown:
        raise KeyError(f"{model} config: missing keys {missing}, unknown keys {unknown}; expected {list(required)} "
                       f"and optionally {list(_OPTIONAL)}")
    cfg = Llama3Config({**_OPTIONAL, **cfg})
    for key in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "hidden_dim", "n_kv_groups"):
        _check_positive(cfg[key], key, model)
    if cfg["head_dim"] is None:
        if cfg["emb_dim"] % cfg["n_heads"]:
            raise ValueError(f"{model}: emb_dim ({cfg['emb_dim']}) must be divisible by n_heads ({cfg['n_heads']})")
    else:
        _check_positive(cfg["head_dim"], "head_dim", model)
    head_dim = cfg["head_dim"] or cfg["emb_dim"] // cfg["n_heads"]
    if head_dim % 2:
        raise ValueError(f"{model}: the head size must be even for RoPE, got {head_dim}")
    if cfg["n_heads"] % cfg["n_kv_groups"]:
        raise ValueError(f"{model}: n_heads ({cfg['n_heads']}) must be divisible by n_kv_groups ({cfg['n_kv_groups']})")
    if not isinstance(cfg["rope_base"], numbers.Real) or not cfg["rope_base"] > 0:
        raise ValueError(f"{model}: rope_base must be a number > 0, got {cfg['rope_base']!r}")
    if cfg["drop_rate"] or cfg["qkv_bias"]:
        raise ValueError(f"{model}: has no dropout and no qkv bias; got drop_rate={cfg['drop_rate']!r}, qkv_bias={cfg['qkv_bias']!r}")
    return cfg


def _check_positive(value, name: str, model: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{model}: {name} must be a positive integer, got {value!r}")


def _parameter_dtype(dtype):
    """float64 stays float64; float32, bfloat16, float16 (and None) compute in float32."""
    try:
        return np.float64 if dtype is not None and np.dtype(dtype) == np.float64 else np.float32
    except TypeError:  # a dtype NumPy does not know (the "bfloat16" placeholder)
        return np.float32


class TransformerBlock(Module):
    """One Llama 3 / Qwen3 block: x + att(norm1(x)), then x + ff(norm2(x)) (pre-norm, no dropout).

    Args:
        cfg: the resolved config dict. norm: the RMSNorm class and eps (a callable of emb_dim).
        rng, init: for the weights (see Linear).

    Attributes: att (GroupedQueryAttention), ff (FeedForward, SwiGLU), norm1, norm2 (RMSNorm).

    Forward: `forward(x, cos, sin, use_cache=False, positions=0, padding_mask=None)`; the
    keywords go to `att`. Shapes: (B, T, C) -> (B, T, C).
    """

    def __init__(self, cfg, norm, rng=None, init: str = "gpt2"):
        super().__init__()
        self.att = GroupedQueryAttention(
            d_in=cfg["emb_dim"], num_heads=cfg["n_heads"], num_kv_groups=cfg["n_kv_groups"], head_dim=cfg["head_dim"],
            qk_norm=cfg["qk_norm"], context_length=cfg["context_length"], rng=rng, init=init,
        )
        self.ff = FeedForward(cfg, rng=rng, init=init)
        self.norm1 = norm(cfg["emb_dim"])
        self.norm2 = norm(cfg["emb_dim"])

    def forward(self, x: Tensor, cos, sin, use_cache: bool = False, positions=0, padding_mask=None) -> Tensor:
        shortcut = x  # (B, T, C)
        x = self.att(self.norm1(x), cos, sin, use_cache=use_cache, positions=positions, padding_mask=padding_mask)
        x = x + shortcut  # the shortcut connection
        shortcut = x
        x = self.ff(self.norm2(x))  # (B, T, C) -> (B, T, hidden_dim) -> (B, T, C)
        return x + shortcut


class Llama3Model(Module):
    """Llama 3: token embedding, n_layers pre-norm blocks with GQA, RoPE and SwiGLU, RMSNorm, a linear head.

    Args:
        cfg: a preset name ("llama3-tiny", "llama3-char", "llama3.2-1b", ...) or the book's config
            dict (LLAMA32_CONFIG_1B's keys; optional "tie_weights", "head_dim", "qk_norm").
        rng: generator or int seed for the weights; None: the default generator (autograd.manual_seed).
        init: "gpt2" (default: every Linear and Embedding weight ~ N(0, 0.02^2), Hugging Face's
            initializer_range for Llama and Qwen3; norms 1) or "pytorch" (the book's layers'
            defaults: Linear U(-1/sqrt(in), 1/sqrt(in)), Embedding N(0, 1)).

    Attributes:
        tok_emb: Embedding(V, C). trf_blocks: ModuleList of TransformerBlock. final_norm: RMSNorm(C).
        out_head: Linear(C, V, bias=False), its weight *is* tok_emb.weight when cfg["tie_weights"].
        cos, sin: the RoPE tables (context_length, head_dim), non-persistent buffers (the book's).
        cfg: the resolved config dict. current_pos: tokens in the KV cache.

    Shapes: int token ids (B, T), T <= context_length -> logits (B, T, V) of the weights' dtype.

    Raises:
        KeyError / ValueError / TypeError: a bad config (see `get_llama3_config`).
        In forward: TypeError for ids that are not integers; ValueError for ids not 2-D, empty, longer
        than context_length or outside [0, vocab_size), and a full KV cache.

    Example:
        >>> model = Llama3Model("llama3-tiny", rng=123)
        >>> model(np.array([[6109, 3626, 6100, 345]])).shape
        (1, 4, 50257)
    """

    _ignored_state_keys = ("cos", "sin")
    _norm_eps = 1e-5  # Llama 3's rms_norm_eps
    _required = _REQUIRED
    _presets = PRESETS

    def __init__(self, cfg, rng=None, init: str = "gpt2"):
        super().__init__()
        if init not in ("gpt2", "pytorch"):
            raise ValueError(f"{type(self).__name__}: init must be 'gpt2' or 'pytorch', got {init!r}")
        cfg = get_llama3_config(cfg, self._presets, self._required, type(self).__name__)
        rng = _generator(rng)
        self.cfg = cfg
        self.tok_emb = Embedding(cfg["vocab_size"], cfg["emb_dim"], rng=rng, init=init)
        self.trf_blocks = ModuleList([TransformerBlock(cfg, self._norm, rng=rng, init=init) for _ in range(cfg["n_layers"])])
        self.final_norm = self._norm(cfg["emb_dim"])
        self.out_head = Linear(cfg["emb_dim"], cfg["vocab_size"], bias=False, rng=rng, init=init)
        if cfg["tie_weights"]:
            self.out_head.weight = self.tok_emb.weight  # one matrix embeds and scores tokens (Press & Wolf 2017)
        head_dim = cfg["head_dim"] or cfg["emb_dim"] // cfg["n_heads"]
        cos, sin = compute_rope_params(head_dim, cfg["rope_base"], cfg["context_length"], cfg["rope_freq"])
        self.register_buffer("cos", cos, persistent=False)  # (context_length, head_dim)
        self.register_buffer("sin", sin, persistent=False)
        self.to(_parameter_dtype(cfg["dtype"]))
        self.reset_kv_cache()

    def _norm(self, emb_dim: int) -> Module:
        """The model's RMSNorm of emb_dim channels: torch.nn.RMSNorm(eps=1e-5), keys `.weight`."""
        return RMSNorm(emb_dim, eps=self._norm_eps)

    @classmethod
    def from_pretrained(cls, folder, dtype=np.float32, **overrides):
        """Load a Hugging Face checkpoint folder (config.json and model.safetensors, or sharded with
        model.safetensors.index.json) of this architecture; see `minigpt.hf_llama.load_hf_checkpoint`."""
        from minigpt.hf_llama import load_hf_checkpoint

        return load_hf_checkpoint(cls, folder, dtype=dtype, **overrides)

    def reset_kv_cache(self, max_seq_len: int | None = None, left_padding=None) -> None:
        """Empty every layer's KV cache, to start a new sequence with `use_cache=True` (as GPTModel's).

        Args:
            max_seq_len: the most tokens the cached sequence will reach (at most context_length).
            left_padding: None, or ints (B,): row b's first left_padding[b] tokens in the next
                cached call are padding, hidden from every query; row b's positions count from its
                first real token.

        Raises:
            ValueError: left_padding not a 1-D array of integers >= 0.
        """
        if left_padding is not None:
            left_padding = np.asarray(left_padding)
            if left_padding.ndim != 1 or left_padding.dtype.kind not in "iu" or (left_padding < 0).any():
                raise ValueError(f"reset_kv_cache: left_padding must be a 1-D array of integers >= 0, got {left_padding!r}")
            left_padding = left_padding.astype(np.int64) if left_padding.any() else None
        for block in self.trf_blocks:
            block.att.reset_cache(max_seq_len)
        self.current_pos = 0
        self.left_padding = left_padding

    def forward(self, in_idx, use_cache: bool = False, last_only: bool = False) -> Tensor:
        """Logits for the next token at every position: int ids (B, T) -> logits (B, T, V).

        Args:
            in_idx: int token ids (B, T) (array, nested list or Tensor).
            use_cache: the tokens continue the sequence cached since `reset_kv_cache()` (inference,
                under `autograd.no_grad()`).
            last_only: compute the output head for the last position only: logits (B, 1, V).
        """
        ids = self._check_token_ids(in_idx)
        batch_size, seq_len = ids.shape
        x = self.tok_emb(ids)  # (B, T) -> (B, T, C): no position embedding, RoPE places the tokens
        positions, padding_mask = self._cache_positions(batch_size, seq_len) if use_cache else (0, None)
        for block in self.trf_blocks:
            x = block(x, self.cos, self.sin, use_cache=use_cache, positions=positions, padding_mask=padding_mask)
        if last_only:
            x = x[:, -1:, :]  # (B, T, C) -> (B, 1, C)
        x = self.final_norm(x)
        return self.out_head(x)  # (B, T, C) -> (B, T, V)

    def _cache_positions(self, batch_size: int, seq_len: int):
        """The position of the next tokens (an int, or (B, T) ints for left-padded rows) and the padding mask."""
        start, stop = self.current_pos, self.current_pos + seq_len
        capacity = min(self.trf_blocks[0].att.max_seq_len or self.cfg["context_length"], self.cfg["context_length"])
        if stop > capacity:
            raise ValueError(
                f"{type(self).__name__}: the KV cache holds {start} tokens and can take {capacity - start} more, got {seq_len} "
                f"(reset_kv_cache(max_seq_len) sizes it, up to context_length={self.cfg['context_length']})")
        self.current_pos = stop
        if self.left_padding is None:
            return start, None
        if self.left_padding.shape[0] != batch_size:
            raise ValueError(f"{type(self).__name__}: left_padding has {self.left_padding.shape[0]} rows, the tokens have {batch_size}")
        slots = np.arange(stop)
        padding_mask = slots[None, :] < self.left_padding[:, None]  # (B, T_k): True where row b has padding
        positions = np.maximum(slots[None, start:stop] - self.left_padding[:, None], 0)  # (B, T)
        return positions, padding_mask

    def _check_token_ids(self, in_idx) -> np.ndarray:
        name = type(self).__name__
        ids = in_idx.data if isinstance(in_idx, Tensor) else np.asarray(in_idx)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"{name}: token ids must be integers, got dtype {ids.dtype}")
        if ids.ndim != 2 or ids.size == 0:
            raise ValueError(f"{name}: token ids must have shape (batch, num_tokens) with at least one token, got shape {ids.shape}")
        if ids.shape[1] > self.cfg["context_length"]:
            raise ValueError(f"{name}: got {ids.shape[1]} tokens, more than context_length={self.cfg['context_length']}; "
                             f"crop the input to its last {self.cfg['context_length']} tokens")
        if ids.min() < 0 or ids.max() >= self.cfg["vocab_size"]:
            bad = ids.min() if ids.min() < 0 else ids.max()
            raise ValueError(f"{name}: token id {int(bad)} is outside the vocabulary [0, {self.cfg['vocab_size']})")
        return ids

    def extra_repr(self) -> str:
        return f"{self.num_parameters():,} parameters"
