"""Qwen3 from scratch (the book's chapter-5 bonus, ch05/11_qwen3): `Qwen3Model`, its configs and presets.

Qwen3 (dense) is Llama 3's architecture (`minigpt/llama3.py`) with three changes:

    - a head size of its own ("head_dim": 128 for every size, not emb_dim / n_heads);
    - every query and key head RMS-normalised before RoPE ("qk_norm", `att.q_norm` / `att.k_norm`);
    - RMSNorm eps 1e-6 and the book's own RMSNorm class, whose scale is `scale` (keys
      `trf_blocks.0.norm1.scale`, `final_norm.scale`, `trf_blocks.0.att.q_norm.scale`);
    and no RoPE frequency scaling (rope_base 1,000,000), the head tied in the small sizes.

`Qwen3Model(cfg)` takes the book's dict (`QWEN_CONFIG_06_B`: vocab_size, context_length,
emb_dim, n_heads, n_layers, hidden_dim, head_dim, qk_norm, n_kv_groups, rope_base, dtype) or a
preset ("qwen3-0.6b", "qwen3-1.7b", the CPU models "qwen3-tiny", "qwen3-char");
`Qwen3Model.from_pretrained(folder)` reads a Hugging Face `Qwen3ForCausalLM` checkpoint.

References: Raschka, LLMs-from-scratch ch05/11_qwen3 and pkg/llms_from_scratch/qwen3.py; Qwen
Team 2025, "Qwen3 Technical Report" (section 2, the architecture); Hugging Face `Qwen3ForCausalLM`.
"""

from __future__ import annotations

import numpy as np

import autograd
from minigpt.llama3 import FeedForward, GroupedQueryAttention, Llama3Model, TransformerBlock
from minigpt.nn.module import Module
from minigpt.nn.rms_norm import Qwen3RMSNorm as RMSNorm
from minigpt.nn.rope import apply_rope, compute_rope_params

__all__ = ["QWEN_CONFIG_06_B", "QWEN3_CONFIG_1_7B", "PRESETS", "Qwen3Model", "RMSNorm", "TransformerBlock",
           "FeedForward", "GroupedQueryAttention", "compute_rope_params", "apply_rope"]

# 0.6 billion parameters
QWEN_CONFIG_06_B = {
    "vocab_size": 151_936,           # Vocabulary size
    "context_length": 40_960,        # Context length that was used to train the model
    "emb_dim": 1024,                 # Embedding dimension
    "n_heads": 16,                   # Number of attention heads
    "n_layers": 28,                  # Number of layers
    "hidden_dim": 3072,              # Size of the intermediate dimension in FeedForward
    "head_dim": 128,                 # Size of the heads in GQA
    "qk_norm": True,                 # Whether to normalize queries and keys in GQA
    "n_kv_groups": 8,                # Key-Value groups for grouped-query attention
    "rope_base": 1_000_000.0,        # The base in RoPE's "theta"
    "dtype": autograd.bfloat16,      # Lower-precision dtype of the released weights (computed in float32 here)
}

# 1.7 billion parameters
QWEN3_CONFIG_1_7B = dict(QWEN_CONFIG_06_B, emb_dim=2048, hidden_dim=6144)

PRESETS = {
    "qwen3-0.6b": dict(QWEN_CONFIG_06_B, tie_weights=True),
    "qwen3-1.7b": dict(QWEN3_CONFIG_1_7B, tie_weights=True),
    # Small models that train on a CPU in minutes (the sizes of "llama3-tiny" and "llama3-char").
    "qwen3-tiny": dict(vocab_size=50257, context_length=128, emb_dim=128, n_heads=4, n_layers=2, hidden_dim=384,
                       head_dim=32, qk_norm=True, n_kv_groups=2, rope_base=1_000_000.0, dtype=np.float32, tie_weights=True),
    "qwen3-char": dict(vocab_size=65, context_length=64, emb_dim=128, n_heads=4, n_layers=4, hidden_dim=384,
                       head_dim=32, qk_norm=True, n_kv_groups=2, rope_base=10_000.0, dtype=np.float32, tie_weights=False),
}

_REQUIRED = ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers", "hidden_dim", "head_dim", "qk_norm",
             "n_kv_groups", "rope_base")


class Qwen3Model(Llama3Model):
    """Qwen3 (dense): Llama3Model with q/k RMSNorm, its own head_dim and the book's RMSNorm (eps 1e-6).

    Args, attributes, shapes and errors: as `Llama3Model` (the config's keys are QWEN_CONFIG_06_B's;
    presets "qwen3-tiny", "qwen3-char", "qwen3-0.6b", "qwen3-1.7b"); the norms are `RMSNorm` with
    a `scale` (the book's Qwen3 class) and each block's `att` has `q_norm` and `k_norm` when
    cfg["qk_norm"].

    Example:
        >>> model = Qwen3Model("qwen3-tiny", rng=123)
        >>> model(np.array([[6109, 3626, 6100, 345]])).shape
        (1, 4, 50257)
    """

    _norm_eps = 1e-6  # Qwen3's rms_norm_eps
    _required = _REQUIRED
    _presets = PRESETS

    def _norm(self, emb_dim: int) -> Module:
        """The book's Qwen3 RMSNorm (eps 1e-6), keys `.scale`."""
        return RMSNorm(emb_dim, eps=self._norm_eps)
