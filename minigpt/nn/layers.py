"""The layers of a GPT besides attention: Linear, Embedding, LayerNorm, GELU, Dropout, FeedForward.

Each layer creates its `Parameter`s with the book's names and PyTorch's shapes in `__init__` and
composes one fused engine function in `forward` (`autograd.functional`), so its gradient is the
engine's hand-derived backward rule; no layer writes a backward of its own.

Initialisation. By default a layer initialises itself as PyTorch's does (`init="pytorch"`), with
PyTorch's formulas, in PyTorch's order, from PyTorch's random stream (`autograd.random`), so that
after `torch.manual_seed(123)` the book's code gets the book's weights bit for bit: nn.Linear's
weight by `kaiming_uniform_(a=sqrt(5))`, U(-b, b) with b = sqrt(3) * sqrt(2 / (1 + a^2)) /
sqrt(in) (about 1/sqrt(in)), then its bias from U(-1/sqrt(in), 1/sqrt(in)); nn.Embedding from
N(0, 1) (`normal_`).
`init="gpt2"` is GPT-2's scheme (Radford et al. 2019; Hugging Face's GPT2 `_init_weights` with
initializer_range 0.02): weights ~ N(0, 0.02^2), biases 0. `GPTModel` passes its `init`
to every layer ("pytorch" by default, as the book's model). LayerNorm: scale 1 and shift 0 in both.

Every draw comes from the generator passed as `rng` (an `autograd.Generator`, an int seed, or a
`np.random.Generator` for NumPy's streams); without one, from the process-wide default generator
(`autograd.random`, seeded by `autograd.manual_seed`, the book's `torch.manual_seed(123)`).

Shape letters: B batch, T tokens, C channels (emb_dim), V vocabulary; `...` any leading dims.

References: Raschka, "Build a Large Language Model (From Scratch)", ch. 2.7 (embeddings), 4.2
(LayerNorm), 4.3 (GELU, FeedForward), 3.5.2 (dropout); torch.nn.Linear, Embedding, LayerNorm,
GELU, Dropout.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from autograd import Tensor
from autograd import functional as F
from autograd import random as _random
from autograd.random import resolve_generator
from minigpt.nn.module import Module, Parameter, Sequential

__all__ = [
    "Linear",
    "Embedding",
    "LayerNorm",
    "GELU",
    "ReLU",
    "Sigmoid",
    "Dropout",
    "FeedForward",
    "INIT_STD",
    "INIT_SCHEMES",
    "skip_init",
]

INIT_STD = 0.02  # GPT-2's initializer_range: standard deviation of Linear and Embedding weights
INIT_SCHEMES = ("pytorch", "gpt2")  # the `init` values Linear, Embedding and the composite layers take


def _generator(rng):
    """The generator to draw from: `rng` itself, a new `autograd.Generator` seeded by an int, or the
    process-wide default for None (see `autograd.random.resolve_generator`)."""
    return resolve_generator(rng)


def _check_init(init, layer: str) -> str:
    if init not in INIT_SCHEMES:
        raise ValueError(f"{layer}: init must be one of {INIT_SCHEMES}, got {init!r}")
    return init


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


def _normal(rng, shape: tuple, std: float) -> np.ndarray:
    """float32 draws from N(0, std^2), as `tensor.normal_(0, std)` (nn.init.normal_)."""
    return _random.normal(rng, shape, 0.0, std, np.float32)


def _uniform(rng, shape: tuple, bound: float) -> np.ndarray:
    """float32 draws from U(-bound, bound), as `tensor.uniform_(-bound, bound)` (nn.init.uniform_)."""
    return _random.uniform(rng, shape, -bound, bound, np.float32)


def _kaiming_uniform_bound(fan_in: int, a: float = math.sqrt(5)) -> float:
    """torch.nn.init.kaiming_uniform_'s bound for leaky_relu(a), computed as PyTorch does, in the same
    float64 steps: gain = sqrt(2 / (1 + a^2)), std = gain / sqrt(fan_in), bound = sqrt(3) * std.
    With a = sqrt(5) (nn.Linear's choice) it is 1/sqrt(fan_in) up to rounding."""
    gain = math.sqrt(2.0 / (1 + a**2))
    return math.sqrt(3.0) * (gain / math.sqrt(fan_in))


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
        rng: `np.random.Generator` or int seed for the initial values; None draws from the
            default generator (`autograd.manual_seed`).
        init: "pytorch" (default): as torch.nn.Linear's reset_parameters, weight by
            kaiming_uniform_(a=sqrt(5)) (U(-b, b), b about 1/sqrt(in_features)), then bias ~
            U(-1/sqrt(in_features), 1/sqrt(in_features)); "gpt2": weight ~ N(0, 0.02^2), bias 0.
        dtype: None (float32), a floating dtype, or `torch.bfloat16` (the values drawn in
            float32, rounded to bfloat16, kept in float32: autograd/bf16.py), as the book's
            Llama/Qwen configs pass it.

    Attributes:
        weight: Parameter (out_features, in_features), float32.
        bias: Parameter (out_features,), or None.

    Shapes: input (..., in_features) -> output (..., out_features).

    Raises:
        ValueError: a size that is not a positive integer, or an unknown `init`.

    References: torch.nn.Linear (and its reset_parameters); He et al. 2015 (Kaiming init);
    Raschka ch. 3.4.2 (nn.Linear for the attention weights).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None, init: str = "pytorch",
                 dtype=None):
        super().__init__()
        self.in_features = _check_size(in_features, "in_features", "Linear")
        self.out_features = _check_size(out_features, "out_features", "Linear")
        init = _check_init(init, "Linear")
        shape = (self.out_features, self.in_features)
        # Zeros until drawn: zero pages cost nothing until written, which `skip_init` relies on.
        self.weight = Parameter(np.zeros(shape, dtype=np.float32))
        self.bias = Parameter(np.zeros(self.out_features, dtype=np.float32)) if bias else None
        if not _skipping_init:
            self.reset_parameters(rng, init)
        if dtype is not None:
            self.to(dtype)

    def reset_parameters(self, rng=None, init: str = "pytorch") -> None:
        """Draw the weight (then the bias) again, in place, by the `init` scheme (see the class)."""
        rng = _generator(rng)
        if _check_init(init, "Linear") == "pytorch":
            # PyTorch's two formulas, in its order: weight first, then bias.
            self.weight.data[...] = _uniform(rng, self.weight.shape, _kaiming_uniform_bound(self.in_features))
            if self.bias is not None:
                self.bias.data[...] = _uniform(rng, self.bias.shape, 1.0 / math.sqrt(self.in_features))
        else:
            self.weight.data[...] = _normal(rng, self.weight.shape, INIT_STD)
            if self.bias is not None:
                self.bias.data[...] = 0.0

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)  # (..., in) -> (..., out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table: row `ids[b, t]` of `weight` for every id (book ch. 2.7).

    Args:
        num_embeddings: number of rows (V for tokens, context_length for positions).
        embedding_dim: size of each row (C).
        rng: generator or int seed for the initial values; None draws from the default generator.
        init: "pytorch" (default): N(0, 1), as torch.nn.Embedding; "gpt2": N(0, 0.02^2).
        dtype: None (float32), a floating dtype, or `torch.bfloat16` (as `Linear`).

    Attributes:
        weight: Parameter (num_embeddings, embedding_dim), float32.

    Shapes: integer ids (...) -> (..., embedding_dim).

    Raises: ValueError for a bad size or `init`; in forward, TypeError for non-integer ids and
    ValueError for an id outside the table.

    References: torch.nn.Embedding.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, rng=None, init: str = "pytorch", dtype=None):
        super().__init__()
        self.num_embeddings = _check_size(num_embeddings, "num_embeddings", "Embedding")
        self.embedding_dim = _check_size(embedding_dim, "embedding_dim", "Embedding")
        init = _check_init(init, "Embedding")
        self.weight = Parameter(np.zeros((self.num_embeddings, self.embedding_dim), dtype=np.float32))
        if not _skipping_init:
            self.reset_parameters(rng, init)
        if dtype is not None:
            self.to(dtype)

    def reset_parameters(self, rng=None, init: str = "pytorch") -> None:
        """Draw the table again, in place: N(0, 1) ("pytorch") or N(0, 0.02^2) ("gpt2")."""
        std = 1.0 if _check_init(init, "Embedding") == "pytorch" else INIT_STD
        self.weight.data[...] = _normal(_generator(rng), self.weight.shape, std)

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
        return f"({self.emb_dim},), eps={self.eps}, elementwise_affine=True, bias=True"  # as torch.nn.LayerNorm


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


class ReLU(Module):
    """ReLU activation, max(0, x) element-wise (torch.nn.ReLU; the book's appendix A and ch. 4.3).

    Shapes: any -> the same shape.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class Sigmoid(Module):
    """Logistic sigmoid 1 / (1 + exp(-x)) element-wise (torch.nn.Sigmoid; the book's appendix A).

    Shapes: any -> the same shape.
    """

    def forward(self, x: Tensor) -> Tensor:
        return F.sigmoid(x)


class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability p, scale the rest by 1/(1-p).

    The identity in eval mode (`model.eval()`), so evaluation needs no rescaling.

    Args:
        p: drop probability in [0, 1] (the book's `drop_rate`).
        rng: the generator the masks are drawn from (an `autograd.Generator`, int seed or
            `np.random.Generator`); None draws each mask from the process-wide default generator (after
            `autograd.manual_seed(123)`, as the book's `torch.manual_seed(123)`). GPTModel
            replaces it with the model's shared `dropout_rng`.

    Raises:
        ValueError: p outside [0, 1].

    References: Srivastava et al. 2014, "Dropout", JMLR 15; torch.nn.Dropout; Raschka ch. 3.5.2.
    """

    def __init__(self, p: float = 0.5, rng=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p!r}")
        self.p = float(p)
        self.rng = rng

    @property
    def rng(self):
        """The generator of the next mask: the one given, or else the default generator of this
        moment (looked up at each call, so a `manual_seed` after construction counts, as in torch)."""
        return _generator(self._rng)

    @rng.setter
    def rng(self, rng) -> None:
        object.__setattr__(self, "_rng", None if rng is None else _generator(rng))

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training, self.rng)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace=False"  # as torch.nn.Dropout


class FeedForward(Module):
    """The transformer block's position-wise MLP: Linear(C, 4C) -> GELU -> Linear(4C, C) (ch. 4.3).

    Args:
        cfg: the book's config dict or a GPTConfig (reads `emb_dim`).
        rng: generator (or int seed) for the weights; None: the default generator.
        init: "pytorch" (default) or "gpt2", passed to both Linear layers.

    Attributes:
        layers: Sequential(Linear(C, 4C), GELU(), Linear(4C, C)), the book's name and order, so
            the state-dict keys are `layers.0.weight` and `layers.2.weight`.

    Shapes: (B, T, C) -> (B, T, C).
    """

    def __init__(self, cfg, rng=None, init: str = "pytorch"):
        super().__init__()
        rng = _generator(rng)
        emb_dim = cfg["emb_dim"]
        # The 4x expansion is GPT-2's (and Vaswani et al. 2017's d_ff = 4 d_model).
        self.layers = Sequential(
            Linear(emb_dim, 4 * emb_dim, rng=rng, init=init),
            GELU(),
            Linear(4 * emb_dim, emb_dim, rng=rng, init=init),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)  # (B, T, C) -> (B, T, 4C) -> (B, T, C)
