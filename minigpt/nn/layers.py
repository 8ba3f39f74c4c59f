"""The layers of a GPT besides attention: Linear, Embedding, LayerNorm, GELU, Dropout, FeedForward.

Each layer creates its `Parameter`s with the book's names and PyTorch's shapes in `__init__` and
composes one fused engine function in `forward` (`autograd.functional`), so its gradient is the
engine's hand-derived backward rule; no layer writes a backward of its own.

Initialisation (GPT-2's scheme, Radford et al. 2019; Hugging Face's GPT2 `_init_weights` with
initializer_range 0.02): Linear and Embedding weights ~ N(0, 0.02^2), biases 0, LayerNorm scale 1
and shift 0. PyTorch's defaults differ: nn.Linear draws weight and bias from U(-1/sqrt(in),
1/sqrt(in)) and nn.Embedding from N(0, 1). We use GPT-2's because it is the scheme the
architecture was trained with: with N(0, 1) embeddings the residual stream starts a hundred times
larger than what the 0.02-scale blocks add to it, and the first steps of training are spent
shrinking it. Every draw comes from the `np.random.Generator` passed as `rng`.

Shape letters: B batch, T tokens, C channels (emb_dim), V vocabulary; `...` any leading dims.

References: Raschka, "Build a Large Language Model (From Scratch)", ch. 2.7 (embeddings), 4.2
(LayerNorm), 4.3 (GELU, FeedForward), 3.5.2 (dropout); torch.nn.Linear, Embedding, LayerNorm,
GELU, Dropout.
"""

from __future__ import annotations

import contextlib

import numpy as np

from autograd import Tensor
from autograd import functional as F
from minigpt.nn.module import Module, Parameter, Sequential

__all__ = ["Linear", "Embedding", "LayerNorm", "GELU", "Dropout", "FeedForward", "INIT_STD", "skip_init"]

INIT_STD = 0.02  # GPT-2's initializer_range: standard deviation of Linear and Embedding weights


def _generator(rng) -> np.random.Generator:
    """An `np.random.Generator` from a Generator, an int seed, or None (a fresh, unseeded one)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or isinstance(rng, (int, np.integer)):
        return np.random.default_rng(rng)
    raise TypeError(f"rng must be an np.random.Generator, an int seed or None, got {type(rng).__name__}")


_skipping_init = False  # set by `skip_init()`


@contextlib.contextmanager
def skip_init():
    """Inside this block, Linear and Embedding weights are allocated but not drawn at random.

    For building a model whose weights are loaded right after (`GPTModel.from_pretrained`):
    drawing 1.5 billion normal numbers for gpt2-xl only to overwrite them would take longer than
    reading the file. The weights hold arbitrary values until loaded. Like
    torch.nn.utils.skip_init.
    """
    global _skipping_init
    previous, _skipping_init = _skipping_init, True
    try:
        yield
    finally:
        _skipping_init = previous


def _normal(rng: np.random.Generator, shape: tuple, std: float) -> np.ndarray:
    """float32 draws from N(0, std^2), drawn directly in float32 (no float64 temporary)."""
    if _skipping_init:
        return np.zeros(shape, dtype=np.float32)  # zero pages cost nothing until written
    weights = rng.standard_normal(shape, dtype=np.float32)
    weights *= np.float32(std)
    return weights


def _check_size(value, name: str, layer: str) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{layer}: {name} must be a positive integer, got {value!r}")
    return int(value)


class Linear(Module):
    """Affine map y = x W^T + b with weight W of shape (out_features, in_features), as PyTorch.

    Args:
        in_features: size of each input row (C_in).
        out_features: size of each output row (C_out).
        bias: learn an additive bias b (C_out,).
        rng: `np.random.Generator` (or int seed) for the N(0, 0.02^2) weight init.

    Attributes:
        weight: Parameter (out_features, in_features), float32.
        bias: Parameter (out_features,) of zeros, or None.

    Shapes: input (..., in_features) -> output (..., out_features).

    References: torch.nn.Linear; Raschka ch. 3.4.2 (nn.Linear for the attention weights).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None):
        super().__init__()
        self.in_features = _check_size(in_features, "in_features", "Linear")
        self.out_features = _check_size(out_features, "out_features", "Linear")
        self.weight = Parameter(_normal(_generator(rng), (self.out_features, self.in_features), INIT_STD))
        self.bias = Parameter(np.zeros(self.out_features, dtype=np.float32)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)  # (..., in) -> (..., out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table: row `ids[b, t]` of `weight` for every id (book ch. 2.7).

    Args:
        num_embeddings: number of rows (V for tokens, context_length for positions).
        embedding_dim: size of each row (C).
        rng: generator (or int seed) for the N(0, 0.02^2) init.

    Attributes:
        weight: Parameter (num_embeddings, embedding_dim), float32.

    Shapes: integer ids (...) -> (..., embedding_dim).

    Raises (in forward): TypeError for non-integer ids, ValueError for an id outside the table.

    References: torch.nn.Embedding.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, rng=None):
        super().__init__()
        self.num_embeddings = _check_size(num_embeddings, "num_embeddings", "Embedding")
        self.embedding_dim = _check_size(embedding_dim, "embedding_dim", "Embedding")
        self.weight = Parameter(_normal(_generator(rng), (self.num_embeddings, self.embedding_dim), INIT_STD))

    def forward(self, ids) -> Tensor:
        return F.embedding(ids, self.weight)  # (...) -> (..., C)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Layer normalisation over the last dimension with a learned scale and shift (book ch. 4.2).

        out = scale * (x - mean) / sqrt(var + eps) + shift,   mean and biased var over C

    Args:
        emb_dim: the size C of the normalised dimension.
        eps: added to the variance (not the standard deviation) so that a constant row does not
            divide by zero; 1e-5 as GPT-2 and PyTorch.

    Attributes:
        scale: Parameter (C,) of ones (PyTorch's `weight`, GPT-2's `ln.weight`).
        shift: Parameter (C,) of zeros (PyTorch's `bias`).

    Shapes: (..., C) -> (..., C).

    References: Ba, Kiros & Hinton 2016, "Layer Normalization", eq. 4; torch.nn.LayerNorm.
    """

    def __init__(self, emb_dim: int, eps: float = 1e-5):
        super().__init__()
        self.emb_dim = _check_size(emb_dim, "emb_dim", "LayerNorm")
        self.eps = eps
        self.scale = Parameter(np.ones(self.emb_dim, dtype=np.float32))
        self.shift = Parameter(np.zeros(self.emb_dim, dtype=np.float32))

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.scale, self.shift, self.eps)  # (..., C) -> (..., C)

    def extra_repr(self) -> str:
        return f"({self.emb_dim},), eps={self.eps}"


class GELU(Module):
    """GELU activation, tanh approximation by default (GPT-2's and the book's, ch. 4.3).

        GELU(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))

    Args:
        approximate: "tanh" or "none" (exact, with erf). NOTE: torch.nn.GELU defaults to "none".

    References: Hendrycks & Gimpel 2016, "Gaussian Error Linear Units", section 2.
    """

    def __init__(self, approximate: str = "tanh"):
        super().__init__()
        if approximate not in ("tanh", "none"):
            raise ValueError(f"GELU: approximate must be 'tanh' or 'none', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability p, scale the rest by 1/(1-p).

    The identity in eval mode (`model.eval()`), so evaluation needs no rescaling.

    Args:
        p: drop probability in [0, 1] (the book's `drop_rate`).
        rng: the `np.random.Generator` the masks are drawn from (or an int seed); None makes a
            fresh unseeded one. GPTModel replaces it with the model's shared `dropout_rng`.

    Raises:
        ValueError: p outside [0, 1].

    References: Srivastava et al. 2014, "Dropout", JMLR 15; torch.nn.Dropout; Raschka ch. 3.5.2.
    """

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)
        self.rng = _generator(rng)

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training, self.rng)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class FeedForward(Module):
    """The transformer block's position-wise MLP: Linear(C, 4C) -> GELU -> Linear(4C, C) (ch. 4.3).

    Args:
        cfg: the book's config dict or a GPTConfig (reads `emb_dim`).
        rng: generator (or int seed) for the weights.

    Attributes:
        layers: Sequential(Linear(C, 4C), GELU(), Linear(4C, C)), the book's name and order, so
            the state-dict keys are `layers.0.weight` and `layers.2.weight`.

    Shapes: (B, T, C) -> (B, T, C).
    """

    def __init__(self, cfg, rng=None):
        super().__init__()
        rng = _generator(rng)
        emb_dim = cfg["emb_dim"]
        # The 4x expansion is GPT-2's (and Vaswani et al. 2017's d_ff = 4 d_model).
        self.layers = Sequential(
            Linear(emb_dim, 4 * emb_dim, rng=rng),
            GELU(),
            Linear(4 * emb_dim, emb_dim, rng=rng),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)  # (B, T, C) -> (B, T, 4C) -> (B, T, C)
