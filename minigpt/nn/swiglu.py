"""The feed-forward block of Llama 3 and Qwen3: SiLU and the gated SwiGLU `FeedForward` (fc1, fc2, fc3).

GPT-2's feed-forward is Linear -> GELU -> Linear. Llama's has three matrices and a gate:

    out = fc3( silu(fc1(x)) * fc2(x) )        silu(z) = z * sigmoid(z)

fc1 (the "gate" projection) and fc2 (the "up" projection) both map C -> hidden_dim; the SiLU of
the first multiplies the second element by element; fc3 ("down") maps back to C. No biases.

Shape letters: B batch, T tokens, C emb_dim, F hidden_dim.

References: Shazeer 2020, "GLU Variants Improve Transformer", eq. 6 (FFN_SwiGLU); Elfwing et al.
2018 (SiLU); torch.nn.SiLU; Raschka, LLMs-from-scratch ch05/07_gpt_to_llama (`FeedForward`);
Hugging Face `LlamaMLP` (gate_proj, up_proj, down_proj).
"""

from __future__ import annotations

from autograd import Tensor
from autograd import functional as F
from minigpt.nn.layers import Linear, _generator
from minigpt.nn.module import Module

__all__ = ["SiLU", "SwiGLUFeedForward"]


class SiLU(Module):
    """SiLU activation, x * sigmoid(x) element-wise (torch.nn.SiLU).

    Shapes: any -> the same shape.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.silu(x)


class SwiGLUFeedForward(Module):
    """Llama's and Qwen3's feed-forward: fc3(silu(fc1(x)) * fc2(x)) (the book's `FeedForward`).

    Args:
        cfg: the book's config dict (reads "emb_dim" and "hidden_dim"; "dtype" is accepted).
        rng: generator (or int seed) for the weights; None: the default generator.
        init: "pytorch" (U(-1/sqrt(in), 1/sqrt(in)), the book's nn.Linear) or "gpt2" (N(0, 0.02^2),
            Hugging Face's initializer_range for Llama and Qwen3).

    Attributes:
        fc1, fc2: Linear(C, F, bias=False), the gate and up projections. fc3: Linear(F, C, bias=False).

    Shapes: (B, T, C) -> (B, T, C).
    """

    def __init__(self, cfg, rng=None, init: str = "pytorch"):
        super().__init__()
        rng = _generator(rng)
        emb_dim, hidden_dim = cfg["emb_dim"], cfg["hidden_dim"]
        self.fc1 = Linear(emb_dim, hidden_dim, bias=False, rng=rng, init=init)
        self.fc2 = Linear(emb_dim, hidden_dim, bias=False, rng=rng, init=init)
        self.fc3 = Linear(hidden_dim, emb_dim, bias=False, rng=rng, init=init)

    def forward(self, x: Tensor) -> Tensor:
        x_fc1 = self.fc1(x)  # (B, T, C) -> (B, T, F) the gate
        x_fc2 = self.fc2(x)  # (B, T, C) -> (B, T, F)
        x = F.silu(x_fc1) * x_fc2  # (B, T, F): the gate's SiLU scales each unit
        return self.fc3(x)  # (B, T, F) -> (B, T, C)
