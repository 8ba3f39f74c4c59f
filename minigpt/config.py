"""The GPT's hyperparameters (book ch. 4): the book's config dict, `GPTConfig`, presets, sizes.

`GPT_CONFIG_124M` is the book's dict of listing 4.1's setting; `GPTConfig` the same keys as a
validated, frozen dataclass (nanoGPT's habit); `PRESETS` the named sizes (OpenAI's GPT-2 sizes,
the book's 124M, and small CPU models); `get_config` resolves any of them; `count_parameters`
is section 4.6's count from the shapes alone. `minigpt.model` builds `GPTModel` from these and
re-exports them (`from minigpt.model import GPT_CONFIG_124M` works as in the book); they live one
level below it so that the checkpoint readers (`minigpt.hf_weights`) need no model.

References: Raschka, "Build a Large Language Model (From Scratch)", chapter 4 (section 4.1,
GPT_CONFIG_124M; section 4.6, the parameter count); Radford et al. 2019 (GPT-2 sizes);
Karpathy's nanoGPT (config dataclass).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

__all__ = ["GPTConfig", "GPT_CONFIG_124M", "PRESETS", "get_config", "count_parameters"]

# The book's configuration of chapter 4 (GPT-2 small's sizes, no qkv bias, separate output head).
GPT_CONFIG_124M = {
    "vocab_size": 50257,  # Vocabulary size
    "context_length": 1024,  # Context length
    "emb_dim": 768,  # Embedding dimension
    "n_heads": 12,  # Number of attention heads
    "n_layers": 12,  # Number of layers
    "drop_rate": 0.1,  # Dropout rate
    "qkv_bias": False,  # Query-Key-Value bias
}


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """The hyperparameters of a GPTModel: the book's config dict as a validated dataclass.

    The defaults are the book's GPT_CONFIG_124M. `cfg["emb_dim"]` works as on the book's dict,
    so layers accept either form.

    Raises:
        ValueError: a size that is not a positive integer, drop_rate outside [0, 1), a flag that
            is not a bool, or emb_dim not divisible by n_heads (each head gets emb_dim / n_heads).

    Example:
        >>> GPTConfig(**GPT_CONFIG_124M).emb_dim
        768
    """

    vocab_size: int = 50257  # number of token ids V (GPT-2's byte-level BPE has 50,257)
    context_length: int = 1024  # longest input in tokens; the number of learned positions
    emb_dim: int = 768  # channels C of every token's vector in the residual stream
    n_heads: int = 12  # attention heads per block; each has emb_dim // n_heads channels
    n_layers: int = 12  # number of transformer blocks
    drop_rate: float = 0.1  # dropout probability on embeddings, attention weights and shortcuts
    qkv_bias: bool = False  # bias on the query/key/value projections (OpenAI's GPT-2 has one)
    tie_weights: bool = False  # out_head.weight is tok_emb.weight (GPT-2 ties; the book does not)

    def __post_init__(self):
        for name in ("vocab_size", "context_length", "emb_dim", "n_heads", "n_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"GPTConfig: {name} must be a positive integer, got {value!r}")
        rate = self.drop_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise ValueError(f"GPTConfig: drop_rate must be a probability in [0, 1), got {rate!r}")
        for name in ("qkv_bias", "tie_weights"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"GPTConfig: {name} must be True or False, got {getattr(self, name)!r}")
        if self.emb_dim % self.n_heads != 0:
            raise ValueError(
                f"GPTConfig: emb_dim ({self.emb_dim}) must be divisible by n_heads ({self.n_heads}), "
                "since every head gets emb_dim / n_heads channels"
            )

    # The book passes a dict around; reading a GPTConfig the same way keeps layers agnostic.
    def __getitem__(self, key: str):
        if key not in self.keys():
            raise KeyError(f"GPTConfig has no field {key!r}; fields: {', '.join(self.keys())}")
        return getattr(self, key)

    def keys(self) -> tuple:
        """The field names, in the book's order."""
        return tuple(field.name for field in dataclasses.fields(self))

    def to_dict(self) -> dict:
        """A plain dict of the fields (the book's config-dict form, plus tie_weights)."""
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "GPTConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, cfg: Mapping) -> "GPTConfig":
        """Build from the book's config dict; `tie_weights` is optional (default False).

        Raises:
            KeyError: keys missing or unknown (all named).
            ValueError: a bad value (see the class docstring).
        """
        fields = [field.name for field in dataclasses.fields(cls)]
        required = [name for name in fields if name != "tie_weights"]
        missing = [name for name in required if name not in cfg]
        unknown = [name for name in cfg if name not in fields]
        if missing or unknown:
            problems = []
            if missing:
                problems.append(f"missing keys {missing}")
            if unknown:
                problems.append(f"unknown keys {unknown}")
            raise KeyError(f"GPT config: {'; '.join(problems)}; expected the keys {fields}")
        return cls(**{name: cfg[name] for name in fields if name in cfg})


PRESETS = {
    # OpenAI's GPT-2 sizes (the book's ch. 4 exercise and ch. 5.5 model_configs), context 1024,
    # with the qkv bias and tied head of the released weights and GPT-2's dropout 0.1.
    "gpt2-small": dict(emb_dim=768, n_layers=12, n_heads=12),  # 124M
    "gpt2-medium": dict(emb_dim=1024, n_layers=24, n_heads=16),  # 355M
    "gpt2-large": dict(emb_dim=1280, n_layers=36, n_heads=20),  # 774M
    "gpt2-xl": dict(emb_dim=1600, n_layers=48, n_heads=25),  # 1558M
    # The book's GPT_CONFIG_124M as it stands (no qkv bias, separate head: 163,009,536 parameters).
    "book-124M": dict(GPT_CONFIG_124M),
    # Small models that train on a CPU in minutes: GPT-2's tokenizer with a tied head (the
    # 50257 x 128 table is most of its 6.8M parameters), and a character-level Shakespeare model
    # (nanoGPT's shakespeare_char CPU settings: 4 layers, 4 heads, 128 wide, 64 tokens).
    "tiny": dict(vocab_size=50257, context_length=128, emb_dim=128, n_layers=2, n_heads=4, drop_rate=0.1,
                 qkv_bias=False, tie_weights=True),
    "char": dict(vocab_size=65, context_length=64, emb_dim=128, n_layers=4, n_heads=4, drop_rate=0.0,
                 qkv_bias=False, tie_weights=False),
}
for _name in ("gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl"):
    PRESETS[_name] = dict(vocab_size=50257, context_length=1024, drop_rate=0.1, qkv_bias=True, tie_weights=True,
                          **PRESETS[_name])
del _name


def get_config(cfg, **overrides) -> GPTConfig:
    """Resolve a preset name, the book's config dict or a GPTConfig into a validated GPTConfig.

    Args:
        cfg: a name from PRESETS, a mapping with the book's keys, or a GPTConfig.
        **overrides: fields to change, e.g. `get_config("gpt2-small", drop_rate=0.0)`.

    Raises:
        KeyError: unknown preset name, or missing/unknown keys in a dict.
        TypeError: cfg of another type. ValueError: bad values.
    """
    if isinstance(cfg, str):
        if cfg not in PRESETS:
            raise KeyError(f"unknown GPT preset {cfg!r}; presets: {', '.join(PRESETS)}")
        config = GPTConfig.from_dict(PRESETS[cfg])
    elif isinstance(cfg, GPTConfig):
        config = cfg
    elif isinstance(cfg, Mapping):
        config = GPTConfig.from_dict(cfg)
    else:
        raise TypeError(f"cfg must be a preset name, a config dict or a GPTConfig, got {type(cfg).__name__}")
    return config.replace(**overrides) if overrides else config


def count_parameters(cfg, count_head_as_tied: bool = False) -> int:
    """The number of parameters of GPTModel(cfg), computed from the shapes (nothing allocated).

    The book's section 4.6: GPT_CONFIG_124M gives 163,009,536, and 124,412,160 when the output
    head is counted as shared with the token embedding, as in GPT-2 (`count_head_as_tied=True`).

    Args:
        cfg: anything `get_config` accepts.
        count_head_as_tied: leave out the output head even if the config does not tie it.
    """
    cfg = get_config(cfg)
    vocab_size, emb_dim = cfg.vocab_size, cfg.emb_dim
    embeddings = vocab_size * emb_dim + cfg.context_length * emb_dim  # tok_emb, pos_emb
    attention = 3 * emb_dim * emb_dim + (3 * emb_dim if cfg.qkv_bias else 0) + emb_dim * emb_dim + emb_dim
    feed_forward = emb_dim * 4 * emb_dim + 4 * emb_dim + 4 * emb_dim * emb_dim + emb_dim
    norms = 2 * 2 * emb_dim  # norm1 and norm2: scale and shift
    blocks = cfg.n_layers * (attention + feed_forward + norms)
    final_norm = 2 * emb_dim
    head = 0 if (cfg.tie_weights or count_head_as_tied) else vocab_size * emb_dim
    return embeddings + blocks + final_norm + head
