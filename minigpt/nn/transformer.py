"""The transformer block of GPT-2: attention and feed-forward, each with a pre-LayerNorm and a shortcut.

    x = x + drop_shortcut(att(norm1(x)))      (B, T, C)
    x = x + drop_shortcut(ff(norm2(x)))       (B, T, C)

The LayerNorm comes before each sub-layer (pre-LN, GPT-2's order; the original transformer put it
after the addition). The shortcut (residual) connections give the gradient a path around every
block, which is what lets a deep stack train at all (He et al. 2016; book ch. 4.4).

Shape letters: B batch, T tokens, C channels (emb_dim).

References: Raschka, "Build a Large Language Model (From Scratch)", listing 4.6 (ch. 4.5);
Radford et al. 2019, "Language Models are Unsupervised Multitask Learners", section 2.3 (the
LayerNorm moved to the input of each sub-block); Xiong et al. 2020, "On Layer Normalization in
the Transformer Architecture".
"""

from __future__ import annotations

from autograd import Tensor
from minigpt.nn.attention import MultiHeadAttention
from minigpt.nn.layers import Dropout, FeedForward, LayerNorm, _generator
from minigpt.nn.module import Module

__all__ = ["TransformerBlock"]


class TransformerBlock(Module):
    """One GPT-2 block: causal multi-head attention and a feed-forward MLP, pre-LN, shortcuts.

    Args:
        cfg: the book's config dict or a GPTConfig; reads emb_dim, context_length, n_heads,
            drop_rate and qkv_bias.
        rng: generator (or int seed) for the weights; None: the default generator.
        init: "pytorch" (default, as the book's layers) or "gpt2" (GPTModel's), for every Linear.

    Attributes:
        att: MultiHeadAttention(emb_dim -> emb_dim, n_heads heads, dropout drop_rate).
        ff: FeedForward (emb_dim -> 4 emb_dim -> emb_dim).
        norm1, norm2: LayerNorm(emb_dim) before att and before ff.
        drop_shortcut: Dropout(drop_rate) on each sub-layer's output, before the addition.

    Forward: `forward(x, use_cache=False, padding_mask=None)`; the two keywords go to `att` (its
    KV cache for generation, book ch. 4 bonus; see MultiHeadAttention).

    Shapes: (B, T, C) -> (B, T, C).
    """

    def __init__(self, cfg, rng=None, init: str = "pytorch"):
        super().__init__()
        rng = _generator(rng)
        self.att = MultiHeadAttention(
            d_in=cfg["emb_dim"],
            d_out=cfg["emb_dim"],
            context_length=cfg["context_length"],
            num_heads=cfg["n_heads"],
            dropout=cfg["drop_rate"],
            qkv_bias=cfg["qkv_bias"],
            rng=rng,
            init=init,
        )
        self.ff = FeedForward(cfg, rng=rng, init=init)
        self.norm1 = LayerNorm(cfg["emb_dim"])
        self.norm2 = LayerNorm(cfg["emb_dim"])
        self.drop_shortcut = Dropout(cfg["drop_rate"])

    def forward(self, x: Tensor, use_cache: bool = False, padding_mask=None) -> Tensor:
        shortcut = x  # (B, T, C)
        x = self.norm1(x)
        if use_cache:
            x = self.att(x, use_cache=True, padding_mask=padding_mask)  # (B, T, C) -> (B, T, C)
        else:
            x = self.att(x)  # the plain call, so that any module standing in for att works (a wrapper)
        x = self.drop_shortcut(x)
        x = x + shortcut  # add the input back: the shortcut connection

        shortcut = x
        x = self.norm2(x)
        x = self.ff(x)  # (B, T, C) -> (B, T, 4C) -> (B, T, C)
        x = self.drop_shortcut(x)
        x = x + shortcut
        return x
