"""The mixture-of-experts feed-forward: ``MoEFeedForward`` (the book's ch04/07_moe, Qwen3's MoE).

A dense transformer block sends every token through one SwiGLU feed-forward. A mixture of experts
(MoE) has ``num_experts`` such feed-forwards ("experts") and a router (``gate``, a Linear layer) that
scores them per token; each token goes through only its ``num_experts_per_tok`` best-scored
experts, and their outputs are mixed with weights from a softmax over *the chosen experts'*
scores. Parameters grow with the number of experts, the compute per token only with k. Shape
letters: B batch, T tokens, C ``emb_dim``, E ``num_experts``, k ``num_experts_per_tok``,
H the expert's hidden size, N = B * T tokens, N_e the tokens routed to expert e.

    scores = x W_gate^T                                    (B, T, E)
    top-k scores s_1..s_k and their experts e_1..e_k       (B, T, k)
    p_j = softmax(s_1..s_k)_j                              (B, T, k)
    out = sum_j p_j * expert_{e_j}(x),  expert_e(x) = fc3_e(silu(fc1_e(x)) * fc2_e(x))

Gradients reach the chosen experts' weights (through their outputs), the router's weights
(through p: the softmax over the chosen scores, then the top-k selection, a gather), and x (both
ways). Experts a token did not choose get no gradient from it; the top-k choice itself is a
discrete step with no gradient, as in the book and PyTorch.

The layer is a composite of engine ops, so its backward is the engine's: per expert, the rows of
the tokens that chose it are selected (``x_flat[rows]``), run through the expert's three Linear
layers, and the outputs of all experts are concatenated and put back in (token, slot) order by
one integer-index gather; a weighted sum over the k slots then gives each token's output. Unlike
the book's loop (an ``index_add_`` per expert into the output), no dense (N, C) array is made per
expert.

Config keys are the book's: ``emb_dim``, ``num_experts``, ``num_experts_per_tok``, and the
expert's hidden size ``moe_intermediate_size`` (qwen3.py, Qwen3's MoE configs) or, when that key is
absent, ``hidden_dim`` (ch04/07_moe); ``dtype`` as ``nn.Linear``'s. The attribute names (``gate``,
``fc1``, ``fc2``, ``fc3`` as ModuleLists) are the book's, so its state dicts load one to one.

References: Raschka, LLMs-from-scratch ``ch04/07_moe/gpt_with_kv_moe.py`` and
``pkg/llms_from_scratch/qwen3.py`` (``MoEFeedForward``); Shazeer et al. 2017, "Outrageously Large
Neural Networks: The Sparsely-Gated Mixture-of-Experts Layer" (top-k gating, eq. 3-5); Qwen3
Technical Report (2025), section 2 (128 experts, 8 active, no shared expert); Shazeer 2020,
"GLU Variants Improve Transformer" (SwiGLU experts).
"""

from __future__ import annotations

import numpy as np

from autograd import Tensor
from autograd import functional as F
from autograd.torch_api import cat
from autograd.random import resolve_generator
from minigpt.nn.layers import Linear
from minigpt.nn.module import Module, ModuleList

__all__ = ["MoEFeedForward"]


def _positive_int(cfg, key: str) -> int:
    value = cfg[key] if key in cfg else None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"MoEFeedForward: cfg[{key!r}] must be a positive integer, got {value!r}")
    return int(value)


def _silu(x: Tensor) -> Tensor:
    """SiLU (swish), x * sigmoid(x) (Hendrycks & Gimpel 2016; Elfwing et al. 2018)."""
    return x * x.sigmoid()


class MoEFeedForward(Module):
    """Top-k routed mixture of SwiGLU experts (see the module docstring for the equations).

    Args:
        cfg: dict (the book's config) with ``emb_dim``, ``num_experts``, ``num_experts_per_tok``,
            and ``moe_intermediate_size`` or ``hidden_dim``; optional ``dtype`` (float32 default,
            float64, or ``torch.bfloat16``).
        rng: generator or int seed for the initial weights (PyTorch's Linear init, drawn gate
            first, then fc1, fc2 and fc3 of each expert in turn); None: the default generator.

    Attributes:
        gate: Linear(C, E, bias=False), the router.
        fc1, fc2: ModuleList of E Linear(C, H, bias=False) (SwiGLU's gate and up projections).
        fc3: ModuleList of E Linear(H, C, bias=False) (the down projection).

    Shapes: x (B, T, C) -> (B, T, C), in x's dtype.

    Raises:
        ValueError: a missing or non-positive size, or ``num_experts_per_tok`` > ``num_experts``;
            in forward, x that is not (B, T, emb_dim).

    References: the book's ``MoEFeedForward`` (ch04/07_moe, qwen3.py), whose outputs and gradients
    the tests match (tests/test_moe.py).
    """

    def __init__(self, cfg, rng=None):
        super().__init__()
        self.emb_dim = _positive_int(cfg, "emb_dim")
        self.num_experts = _positive_int(cfg, "num_experts")
        self.num_experts_per_tok = _positive_int(cfg, "num_experts_per_tok")
        hidden_key = "moe_intermediate_size" if "moe_intermediate_size" in cfg else "hidden_dim"
        hidden = _positive_int(cfg, hidden_key)
        if self.num_experts_per_tok > self.num_experts:
            raise ValueError(f"MoEFeedForward: num_experts_per_tok ({self.num_experts_per_tok}) must not exceed "
                             f"num_experts ({self.num_experts})")
        rng, dtype = resolve_generator(rng), cfg.get("dtype")
        self.gate = Linear(self.emb_dim, self.num_experts, bias=False, rng=rng, dtype=dtype)
        experts = [(Linear(self.emb_dim, hidden, bias=False, rng=rng, dtype=dtype),
                    Linear(self.emb_dim, hidden, bias=False, rng=rng, dtype=dtype),
                    Linear(hidden, self.emb_dim, bias=False, rng=rng, dtype=dtype)) for _ in range(self.num_experts)]
        self.fc1 = ModuleList([fc1 for fc1, _, _ in experts])
        self.fc2 = ModuleList([fc2 for _, fc2, _ in experts])
        self.fc3 = ModuleList([fc3 for _, _, fc3 in experts])

    def expert(self, index: int, x: Tensor) -> Tensor:
        """Expert ``index``'s SwiGLU feed-forward: fc3(silu(fc1(x)) * fc2(x)), (..., C) -> (..., C)."""
        return self.fc3[index](_silu(self.fc1[index](x)) * self.fc2[index](x))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or x.shape[-1] != self.emb_dim:
            raise ValueError(f"MoEFeedForward: x must be (batch, tokens, {self.emb_dim}), got shape {tuple(x.shape)}")
        batch, tokens, channels = x.shape
        k = self.num_experts_per_tok
        scores = self.gate(x)                                   # (B, T, C) -> (B, T, E)
        topk_scores, topk_indices = scores.topk(k, dim=-1)      # (B, T, k) each
        topk_probs = F.softmax(topk_scores, dim=-1)             # over the chosen experts only
        x_flat = x.reshape(batch * tokens, channels)            # (N, C)
        chosen = topk_indices.data.reshape(-1, k)               # (N, k) expert ids, distinct per row

        # Run each expert on the rows of the tokens that chose it; remember where each output
        # row belongs in the (token, slot) order: position token * k + slot.
        outputs, positions = [], []
        for expert_id in np.unique(chosen):
            rows, slots = np.nonzero(chosen == expert_id)       # each token picks an expert at most once
            outputs.append(self.expert(int(expert_id), x_flat[rows]))  # (N_e, C)
            positions.append(rows * k + slots)
        order = np.empty(batch * tokens * k, dtype=np.int64)
        order[np.concatenate(positions)] = np.arange(order.size)   # inverse permutation
        expert_out = cat(outputs, dim=0)[order]                 # (N * k, C), (token, slot) order
        expert_out = expert_out.view(batch, tokens, k, channels)
        return (expert_out * topk_probs.unsqueeze(-1)).sum(dim=2)   # (B, T, k, C) -> (B, T, C)

    def extra_repr(self) -> str:
        return (f"emb_dim={self.emb_dim}, num_experts={self.num_experts}, "
                f"num_experts_per_tok={self.num_experts_per_tok}")
