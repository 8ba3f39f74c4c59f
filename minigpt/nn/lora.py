"""LoRA, low-rank adaptation: fine-tune a frozen model by training two thin matrices per Linear.

Appendix E of the book (listings E.5-E.7): a `Linear` with frozen weight W (out, in) is wrapped so
that it computes

    y = x W^T + b + (alpha / rank) * x A B,     A: (in, rank), B: (rank, out)

and only A and B are trained. With rank << min(in, out) that is rank * (in + out) trainable
numbers instead of in * out: 2.7 million instead of 124 million for GPT-2 small with a 2-class
head at rank 16 (the appendix's count). B starts at zero, so a freshly wrapped model computes
exactly what it computed before; A starts like a PyTorch Linear weight, so the first updates of B
already see useful directions.

What this file adds: `LoRALayer`, `LinearWithLoRA`, `replace_linear_with_lora` (the book's three
names and signatures) and `merge_lora`, which folds the update back into the base weights so a
fine-tuned model saves, exports and runs as a plain GPTModel. No backward is written here: the
extra products are engine matmuls, so their gradients are the engine's.

Shape letters: B batch, T tokens, C_in / C_out the Linear's features, r the rank.

References: Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models", eq. 3 and
section 4.1 (the alpha / r scaling, B = 0 at the start); Raschka, "Build a Large Language Model
(From Scratch)", appendix E.4-E.5, and ch. 7 exercise 7.4 (LoRA for instruction fine-tuning).
"""

from __future__ import annotations

import math

import numpy as np

from autograd import Tensor
from minigpt.nn import layers
from minigpt.nn.layers import Linear, _check_size, _generator
from minigpt.nn.module import Module, Parameter

__all__ = ["LoRALayer", "LinearWithLoRA", "replace_linear_with_lora", "merge_lora"]


def _check_alpha(alpha, where: str) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)) or not math.isfinite(alpha):
        raise ValueError(f"{where}: alpha must be a finite number, got {alpha!r}")
    return float(alpha)


def _kaiming_uniform(rng, shape: tuple) -> np.ndarray:
    """float32 draws as torch.nn.init.kaiming_uniform_(w, a=sqrt(5)) for a 2-D `w` of `shape`.

    PyTorch takes fan_in = shape[1] (it reads every 2-D weight as (out, in)); with a = sqrt(5) the
    gain sqrt(2 / (1 + a^2)) = sqrt(1/3) makes the bound gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in)
    (computed in PyTorch's float64 steps, drawn from PyTorch's stream as `uniform_`).
    For the book's A of shape (in_dim, rank) that is U(-1/sqrt(rank), 1/sqrt(rank)).
    """
    if layers._skipping_init:  # inside skip_init(): values come from a checkpoint right after
        return np.zeros(shape, dtype=np.float32)
    return layers._uniform(rng, shape, layers._kaiming_uniform_bound(shape[1]))


class LoRALayer(Module):
    """The low-rank update of appendix E: x -> (alpha / rank) * x A B (listing E.5).

    Args:
        in_dim: size C_in of each input row.
        out_dim: size C_out of each output row.
        rank: the inner dimension r of A and B, a positive integer.
        alpha: the scale numerator; the update is scaled by alpha / rank, so runs with different
            ranks can share one learning rate (the book and Hu et al. use alpha = rank, scale 1).
        rng: `np.random.Generator` or int seed for A's initial values.

    Attributes:
        A: Parameter (in_dim, rank), float32, Kaiming-uniform as the book's
            `nn.init.kaiming_uniform_(A, a=math.sqrt(5))`: U(-1/sqrt(rank), 1/sqrt(rank)).
        B: Parameter (rank, out_dim) of zeros, so the update starts at exactly zero.
        rank, alpha: as given.

    Shapes: (..., in_dim) -> (..., out_dim).

    Raises:
        ValueError: in_dim, out_dim or rank not a positive integer; alpha not a finite number.

    References: Hu et al. 2021, eq. 3; Raschka appendix E.5, listing E.5.
    """

    def __init__(self, in_dim: int, out_dim: int, rank: int, alpha: float, rng=None):
        super().__init__()
        in_dim = _check_size(in_dim, "in_dim", "LoRALayer")
        out_dim = _check_size(out_dim, "out_dim", "LoRALayer")
        self.rank = _check_size(rank, "rank", "LoRALayer")
        self.alpha = _check_alpha(alpha, "LoRALayer")
        self.A = Parameter(_kaiming_uniform(_generator(rng), (in_dim, self.rank)))
        self.B = Parameter(np.zeros((self.rank, out_dim), dtype=np.float32))

    @property
    def scaling(self) -> float:
        """alpha / rank, the factor in front of x A B."""
        return self.alpha / self.rank

    def forward(self, x: Tensor) -> Tensor:
        # (N, C_in) @ (C_in, r) -> (N, r) @ (r, C_out) -> (N, C_out) with N = B*T rows: two thin
        # products, never the full (C_in, C_out) matrix A B.
        # Rows are flattened to 2-D first: np.matmul of a (B, T, C_in) array with a matrix makes
        # one BLAS call per batch row, the (B*T, C_in) view one call in all (each call of a thin
        # product costs little arithmetic but a wake-up of BLAS's threads).
        leading = x.shape[:-1]
        rows = x.reshape(-1, x.shape[-1])  # (..., C_in) -> (N, C_in), a view of contiguous x
        # The scale goes on the thin (N, r) middle, not the (N, C_out) output: a multiplication
        # keeps its inputs for backward, and there they are r numbers per row instead of C_out.
        scaling = np.asarray(self.scaling, dtype=self.A.data.dtype)  # keep float32 float32
        out = ((rows @ self.A) * scaling) @ self.B  # (N, C_out)
        return out.reshape(*leading, out.shape[-1])  # (..., C_out)

    def delta_weight(self) -> np.ndarray:
        """The update in a Linear weight's layout: (alpha / rank) * (A B)^T, shape (C_out, C_in)."""
        return (self.A.data @ self.B.data).T * self.A.data.dtype.type(self.scaling)

    def extra_repr(self) -> str:
        in_dim, out_dim = self.A.shape[0], self.B.shape[1]
        return f"in_dim={in_dim}, out_dim={out_dim}, rank={self.rank}, alpha={self.alpha:g}"


class LinearWithLoRA(Module):
    """A Linear plus its LoRA update: linear(x) + lora(x) (listing E.6).

    Args:
        linear: the `Linear` to adapt; it is kept as is (freeze it with `requires_grad_(False)`
            or the book's loop over `model.parameters()`).
        rank, alpha: see `LoRALayer`.
        rng: generator or int seed for the LoRA A matrix.

    Attributes:
        linear: the wrapped Linear (its parameters keep their names under `.linear.`).
        lora: the LoRALayer(in_features, out_features, rank, alpha).
        in_features, out_features: the wrapped layer's, so code that reads them still works.

    Shapes: (..., in_features) -> (..., out_features).

    Raises:
        TypeError: `linear` is not a minigpt.nn.Linear.

    References: Raschka appendix E.5, listing E.6.
    """

    def __init__(self, linear: Linear, rank: int, alpha: float, rng=None):
        super().__init__()
        if not isinstance(linear, Linear):
            raise TypeError(f"LinearWithLoRA: linear must be a minigpt.nn.Linear, got {type(linear).__name__}")
        self.linear = linear
        self.lora = LoRALayer(linear.in_features, linear.out_features, rank, alpha, rng=rng)
        self.lora.to(linear.weight.data.dtype)  # a float64 model gets float64 A and B
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x) + self.lora(x)  # (..., C_in) -> (..., C_out)

    def merged_linear(self) -> Linear:
        """A plain Linear computing the same function: weight W + (alpha / rank) * (A B)^T.

        The new weight is a new array (a weight shared with another layer, such as a head tied to
        the token embedding, is left unchanged); the bias is the wrapped layer's own Parameter.
        The merged weight keeps the base weight's `requires_grad`.
        """
        base = self.linear
        with layers.skip_init():
            merged = Linear(base.in_features, base.out_features, bias=base.bias is not None)
        merged.weight = Parameter(base.weight.data + self.lora.delta_weight(), requires_grad=base.weight.requires_grad)
        merged.bias = base.bias
        return merged


def replace_linear_with_lora(model: Module, rank: int, alpha: float, rng=None) -> Module:
    """Wrap every Linear of `model`, at any depth, in a LinearWithLoRA, in place (listing E.7).

    As the appendix: the attention projections (W_query, W_key, W_value, out_proj), both
    feed-forward layers, and the output or classification head are all wrapped. A Linear already
    inside a LinearWithLoRA is left alone, so calling this twice does not stack adapters.

    Args:
        model: any Module (a GPTModel, a block, a Sequential, a Linear's parent).
        rank, alpha: see `LoRALayer`.
        rng: `np.random.Generator` or int seed from which every A is drawn, in module order
            (one seed makes the adapted model reproducible).

    Returns:
        `model` (also changed in place, as the book's function).

    Raises:
        TypeError: `model` is not a Module. ValueError: a bad rank or alpha.

    Example (appendix E.5): freeze, then adapt; only A and B train:
        >>> for param in model.parameters():
        ...     param.requires_grad = False
        >>> replace_linear_with_lora(model, rank=16, alpha=16)

    References: Raschka appendix E.5, listing E.7.
    """
    if not isinstance(model, Module):
        raise TypeError(f"replace_linear_with_lora: model must be a Module, got {type(model).__name__}")
    _check_size(rank, "rank", "replace_linear_with_lora")
    _check_alpha(alpha, "replace_linear_with_lora")
    rng = _generator(rng)
    for name, module in list(model.named_children()):
        if isinstance(module, Linear):
            setattr(model, name, LinearWithLoRA(module, rank, alpha, rng=rng))
        elif not isinstance(module, LinearWithLoRA):
            replace_linear_with_lora(module, rank, alpha, rng=rng)
    return model


def merge_lora(model: Module) -> Module:
    """Fold every LoRA update into its base weight and put back plain Linear layers, in place.

    Each LinearWithLoRA becomes `LinearWithLoRA.merged_linear()`: weight W + (alpha / rank) A^T B^T
    ... written in the Linear layout (C_out, C_in). The result has the state-dict keys of the model
    before `replace_linear_with_lora`, so it saves (`save_pretrained`), exports and loads like any
    other model, and runs without the two extra products. Its outputs equal the unmerged model's to
    float32 rounding (the sum is regrouped: x (W + dW)^T instead of x W^T + x dW^T).

    A head tied to the token embedding (GPT-2's `tie_weights`) gets its own merged weight: merging
    into the shared matrix would change the embedding as well. The model's `cfg.tie_weights` then
    becomes False, so `save_pretrained` writes the head as `lm_head.weight`.

    Args:
        model: a Module that may contain LinearWithLoRA layers (or be one).

    Returns:
        `model`, or the merged Linear when `model` itself is a LinearWithLoRA.

    Raises:
        TypeError: `model` is not a Module.

    References: Hu et al. 2021, section 4.1 ("no additional inference latency": W = W0 + B A).
    """
    if not isinstance(model, Module):
        raise TypeError(f"merge_lora: model must be a Module, got {type(model).__name__}")
    if isinstance(model, LinearWithLoRA):
        return model.merged_linear()
    _merge_children(model)
    cfg = getattr(model, "cfg", None)
    head, embedding = getattr(model, "out_head", None), getattr(model, "tok_emb", None)
    if getattr(cfg, "tie_weights", False) and head is not None and embedding is not None:
        if head.weight is not embedding.weight:
            model.cfg = cfg.replace(tie_weights=False)
    return model


def _merge_children(module: Module) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, LinearWithLoRA):
            setattr(module, name, child.merged_linear())
        else:
            _merge_children(child)
