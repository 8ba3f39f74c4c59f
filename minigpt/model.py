"""The GPT model of the book's chapter 4: `GPTModel` (its configuration and presets: `minigpt.config`).

    token ids (B, T) -> tok_emb + pos_emb -> drop_emb -> n_layers x TransformerBlock
                     -> final_norm -> out_head -> logits (B, T, V)

`GPTModel(cfg)` takes the book's config dict (`GPT_CONFIG_124M`), a `GPTConfig`, or the name of a
preset ("gpt2-small", "char", ...), and has the book's attribute names, so `model.state_dict()`
has exactly the keys of the book's PyTorch model (`tok_emb.weight`,
`trf_blocks.0.att.W_query.weight`, `trf_blocks.0.norm1.scale`, `out_head.weight`, ...).
OpenAI's GPT-2 weights load with `GPTModel.from_pretrained(path)` (see `pretrained.py`).
For generation, `forward(ids, use_cache=True)` and `reset_kv_cache()` are the key/value cache of
the book's chapter-4 bonus (`gpt_with_kv_cache.py`), preallocated per layer.

Shape letters: B batch, T tokens (num_tokens), C channels (emb_dim), V vocabulary.

References: Raschka, "Build a Large Language Model (From Scratch)", chapter 4 (listing 4.7,
GPTModel; section 4.6, the parameter count; listing 4.8, generate_text_simple; the bonus material
ch04/03_kv-cache, the KV cache); Radford et al.
2019, "Language Models are Unsupervised Multitask Learners" (GPT-2: sizes, section 2.3
initialisation); Karpathy's nanoGPT (weight tying, config dataclass).
"""

from __future__ import annotations

import math

import numpy as np

from autograd import Tensor
from autograd.random import Generator, random_bits
from minigpt.config import GPT_CONFIG_124M, PRESETS, GPTConfig, count_parameters, get_config
from minigpt.generate import generate_text_simple  # book listing 4.8; lives with generate()
from minigpt.hf_weights import load_pretrained_into, save_pretrained
from minigpt.nn import Dropout, Embedding, LayerNorm, Linear, Module, Sequential, TransformerBlock
from minigpt.nn.layers import _generator

__all__ = [
    "GPTConfig",
    "GPT_CONFIG_124M",
    "PRESETS",
    "get_config",
    "count_parameters",
    "GPTModel",
    "generate_text_simple",
]

def _derived_generator(generator):
    """A new generator of the same kind, seeded by one 63-bit draw from `generator`."""
    if isinstance(generator, np.random.Generator):
        return np.random.default_rng(generator.integers(2**63))
    return Generator().manual_seed(int(random_bits(generator, (), np.int64)))


class GPTModel(Module):
    """GPT-2: token and position embeddings, a stack of transformer blocks, a linear head (listing 4.7).

    Args:
        cfg: a preset name ("gpt2-small", "book-124M", "tiny", "char", ...), the book's config
            dict (e.g. GPT_CONFIG_124M) or a GPTConfig.
        rng: generator (`autograd.Generator`, int seed, or `np.random.Generator`) for the initial
            weights; None draws from the process-wide default generator, so that the book's
            `torch.manual_seed(123); model = GPTModel(GPT_CONFIG_124M)` gives the book's weights
            bit for bit (PyTorch's streams, formulas and order of construction).
        dropout_rng: generator or int seed for every dropout mask of the model; None: a stream
            derived from `rng` when `rng` is given (one seed fixes the whole run), else the
            default generator at each call (as PyTorch: the book's masks after its seed).
        init: "pytorch" (PyTorch's layer defaults, which the book's model gets) or "gpt2"
            (described below). None (default): "pytorch" for an untied head, as the book's
            configs have, and "gpt2" for a config with `tie_weights` (GPT-2's presets, "tiny"):
            a tied head scoring with N(0, 1) embeddings would start with logits of standard
            deviation sqrt(emb_dim) (a loss of ~80 for "tiny", not ln(50257) = 10.8).
            `minigpt train` chooses per preset (`--init`).

    Attributes:
        tok_emb: Embedding(V, C). pos_emb: Embedding(context_length, C). drop_emb: Dropout.
        trf_blocks: Sequential of n_layers TransformerBlock. final_norm: LayerNorm(C).
        out_head: Linear(C, V, bias=False); its weight *is* tok_emb.weight when cfg.tie_weights.
        cfg: the resolved GPTConfig.
        current_pos: tokens in the KV cache (the position of the next cached token); see
            `reset_kv_cache` and `forward(..., use_cache=True)`.
        dropout_rng: the one generator shared by every Dropout (and the attention dropout). Save
            its state (`get_state()`, or `bit_generator.state` of a np.random.Generator) with a
            checkpoint and restore it to resume with exactly the same masks; assigning a new
            generator re-wires every dropout.

    Initialisation. "pytorch": each layer as PyTorch initialises it (nn.Linear: weight by
    kaiming_uniform_(a=sqrt(5)), about U(-1/sqrt(in), 1/sqrt(in)), then bias U(-1/sqrt(in),
    1/sqrt(in)); nn.Embedding N(0, 1); LayerNorm scale 1, shift 0), in the book's order.
    "gpt2" (Radford et al. 2019 section 2.3, as Hugging Face's GPT2 and nanoGPT): Linear and
    Embedding weights ~ N(0, 0.02^2), biases 0, LayerNorm scale 1 and shift 0; the two
    projections that write into the residual stream (att.out_proj and ff.layers[2]) are scaled by
    1/sqrt(2 n_layers), because each of the 2 n_layers shortcut additions adds its variance to the
    stream and this keeps the sum's variance independent of depth.

    Shapes: int token ids (B, T), T <= context_length -> float32 logits (B, T, V).

    Raises (forward):
        TypeError: ids that are not integers (floats, bools).
        ValueError: ids not 2-D, no tokens, more tokens than context_length, or an id outside
            [0, vocab_size); each message names the limit and the value.

    Example:
        >>> model = GPTModel(GPT_CONFIG_124M, rng=123)  # or: torch.manual_seed(123); GPTModel(GPT_CONFIG_124M)
        >>> model(np.array([[6109, 3626, 6100, 345]])).shape
        (1, 4, 50257)
    """

    def __init__(self, cfg, rng=None, dropout_rng=None, init: str | None = None):
        super().__init__()
        if init not in (None, "gpt2", "pytorch"):
            raise ValueError(f"GPTModel: init must be 'gpt2', 'pytorch' or None, got {init!r}")
        cfg = get_config(cfg)
        if init is None:
            init = "gpt2" if cfg.tie_weights else "pytorch"
        generator = _generator(rng)
        self.cfg = cfg
        # The book's order of construction, each layer drawing its own weights as it is built:
        # with init="pytorch" and the default generator these are the book's model's draws.
        self.tok_emb = Embedding(cfg.vocab_size, cfg.emb_dim, rng=generator, init=init)
        self.pos_emb = Embedding(cfg.context_length, cfg.emb_dim, rng=generator, init=init)
        self.drop_emb = Dropout(cfg.drop_rate)
        self.trf_blocks = Sequential(*[TransformerBlock(cfg, rng=generator, init=init) for _ in range(cfg.n_layers)])
        self.final_norm = LayerNorm(cfg.emb_dim)
        self.out_head = Linear(cfg.emb_dim, cfg.vocab_size, bias=False, rng=generator, init=init)
        if cfg.tie_weights:
            # One matrix both embeds tokens and scores them (Press & Wolf 2017), as GPT-2 does:
            # saves V*C parameters. Assigned after creation, as in nanoGPT.
            self.out_head.weight = self.tok_emb.weight
        if init == "gpt2":
            residual_scale = np.float32(1.0 / math.sqrt(2 * cfg.n_layers))
            for block in self.trf_blocks:
                block.att.out_proj.weight.data *= residual_scale
                block.ff.layers[2].weight.data *= residual_scale
        if dropout_rng is None and rng is not None:
            # A model given its own generator gets its own dropout stream, seeded from it, so one
            # seed fixes the whole run; the book's way (no rng) draws masks from the default one.
            dropout_rng = _derived_generator(generator)
        self.dropout_rng = dropout_rng
        self.reset_kv_cache()

    @property
    def dropout_rng(self):
        """The generator every dropout of this model draws its masks from (the default generator
        unless the model was given `rng` or `dropout_rng`)."""
        return self._dropout_rng

    @dropout_rng.setter
    def dropout_rng(self, rng) -> None:
        rng = _generator(rng)
        object.__setattr__(self, "_dropout_rng", rng)
        for module in self.modules():
            if isinstance(module, Dropout):
                module.rng = rng

    @classmethod
    def from_pretrained(cls, name_or_path, dtype=np.float32, **overrides) -> "GPTModel":
        """Load OpenAI's GPT-2 ("gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl", downloaded
        once into the cache) or a Hugging Face GPT-2 safetensors checkpoint directory or file.

        The config (qkv_bias True, context 1024, tied head) follows from the checkpoint. See
        `minigpt.pretrained.load_pretrained` for the arguments and errors.
        """
        return load_pretrained_into(cls, name_or_path, dtype=dtype, **overrides)

    def save_pretrained(self, directory) -> str:
        """Write the model in the Hugging Face GPT-2 layout (see `minigpt.pretrained.save_pretrained`)."""
        return save_pretrained(self, directory)

    def reset_kv_cache(self, max_seq_len: int | None = None, left_padding=None) -> None:
        """Empty every layer's KV cache, to start a new sequence with `use_cache=True` (ch. 4 bonus).

        Args:
            max_seq_len: the most tokens the cached sequence will reach (prompt plus new tokens);
                each layer's cache is preallocated for that many, at most context_length (the
                default). Sizing it to the run keeps memory at B * 2 * n_layers * max_seq_len * C
                floats instead of a whole context's worth.
            left_padding: None, or ints (B,): row b's first left_padding[b] tokens in the next
                cached call are padding (a batch of prompts of different lengths, right-aligned).
                Those slots are hidden from every query and row b's positions count from its first
                real token, so each row computes what it would alone.

        Raises:
            ValueError: max_seq_len not a positive integer; left_padding not a 1-D array of
                integers >= 0.
        """
        if left_padding is not None:
            left_padding = np.asarray(left_padding)
            if left_padding.ndim != 1 or left_padding.dtype.kind not in "iu" or (left_padding < 0).any():
                raise ValueError(f"reset_kv_cache: left_padding must be a 1-D array of integers >= 0, got {left_padding!r}")
            left_padding = left_padding.astype(np.int64) if left_padding.any() else None  # no padding: no mask
        for block in self.trf_blocks:
            block.att.reset_cache(max_seq_len)
        self.current_pos = 0  # tokens in the cache: the position of the next token (without padding)
        self.left_padding = left_padding

    def forward(self, in_idx, use_cache: bool = False, last_only: bool = False) -> Tensor:
        """Logits for the next token at every position: int ids (B, T) -> float logits (B, T, V).

        `in_idx` may be an integer np.ndarray, nested list or Tensor. The logits have the
        parameters' dtype (float32, or float64 after `to(np.float64)`); position t depends only on
        tokens 0..t (causal attention).

        Args:
            in_idx: int token ids (B, T).
            use_cache: inference with the KV cache (book ch. 4 bonus): the tokens continue the
                sequence cached since `reset_kv_cache()`, at positions current_pos ...
                current_pos + T - 1, and only their keys and values are computed. Builds no
                graph for the cache; use it under `autograd.no_grad()`.
            last_only: compute the output head for the last position only: logits (B, 1, V).
                Generation needs nothing else, and the head (C x V) is the largest product.

        Raises:
            ValueError: see the class docstring; with the cache, more tokens than the cache holds
                (current_pos + T > max_seq_len of `reset_kv_cache`, at most context_length), or
                a batch size other than left_padding's.
        """
        ids = self._check_token_ids(in_idx)
        batch_size, seq_len = ids.shape
        tok_embeds = self.tok_emb(ids)  # (B, T) -> (B, T, C)
        padding_mask = None
        if use_cache:
            positions, padding_mask = self._cache_positions(batch_size, seq_len)  # (B, T) or (T,)
        else:
            positions = np.arange(seq_len)  # (T,)
        pos_embeds = self.pos_emb(positions)  # (T,) -> (T, C): one learned vector per position; or (B, T, C)
        x = tok_embeds + pos_embeds  # (B, T, C) + (T, C) -> (B, T, C), broadcast over the batch
        x = self.drop_emb(x)
        if use_cache:
            for block in self.trf_blocks:
                x = block(x, use_cache=True, padding_mask=padding_mask)  # (B, T, C) -> (B, T, C)
        else:
            x = self.trf_blocks(x)  # (B, T, C) -> (B, T, C)
        if last_only:
            x = x[:, -1:, :]  # (B, T, C) -> (B, 1, C): the head then runs as one (B, C) x (C, V) product
        x = self.final_norm(x)
        logits = self.out_head(x)  # (B, T, C) -> (B, T, V)
        return logits

    def _cache_positions(self, batch_size: int, seq_len: int):
        """Positions (T,) or, for left-padded rows, (B, T) of the next tokens, and the padding mask."""
        start, stop = self.current_pos, self.current_pos + seq_len
        capacity = self.trf_blocks[0].att.max_seq_len
        if stop > capacity:
            raise ValueError(
                f"GPTModel: the KV cache holds {start} tokens and can take {capacity - start} more, got {seq_len} "
                f"(reset_kv_cache(max_seq_len) sizes it, up to context_length={self.cfg.context_length}); past the "
                "context, reset the cache and run the last context_length tokens again, as generate() does"
            )
        self.current_pos = stop
        if self.left_padding is None:
            return np.arange(start, stop), None
        if self.left_padding.shape[0] != batch_size:
            raise ValueError(f"GPTModel: left_padding has {self.left_padding.shape[0]} rows, the tokens have {batch_size}")
        slots = np.arange(stop)  # (T_k,) every cache slot filled after this call
        padding_mask = slots[None, :] < self.left_padding[:, None]  # (B, T_k): True where row b has padding
        # Row b's real tokens start at slot left_padding[b]: its position 0. Padding slots get 0
        # too (any valid position: no real token ever sees them).
        positions = np.maximum(slots[None, start:stop] - self.left_padding[:, None], 0)  # (B, T)
        return positions, padding_mask

    def _check_token_ids(self, in_idx) -> np.ndarray:
        ids = in_idx.data if isinstance(in_idx, Tensor) else np.asarray(in_idx)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"GPTModel: token ids must be integers, got dtype {ids.dtype}")
        if ids.ndim != 2:
            hint = "; for one sequence use ids[None, :]" if ids.ndim == 1 else ""
            raise ValueError(f"GPTModel: token ids must have shape (batch, num_tokens), got shape {ids.shape}{hint}")
        num_tokens = ids.shape[1]
        if num_tokens == 0 or ids.shape[0] == 0:
            raise ValueError(f"GPTModel: got no tokens, an empty batch of token ids (shape {ids.shape}); give at least one")
        if num_tokens > self.cfg.context_length:
            raise ValueError(
                f"GPTModel: got {num_tokens} tokens, more than context_length={self.cfg.context_length}; "
                f"crop the input to its last {self.cfg.context_length} tokens"
            )
        smallest, largest = ids.min(), ids.max()
        if smallest < 0 or largest >= self.cfg.vocab_size:
            bad = smallest if smallest < 0 else largest
            raise ValueError(f"GPTModel: token id {int(bad)} is outside the vocabulary [0, {self.cfg.vocab_size})")
        return ids

