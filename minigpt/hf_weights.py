"""Hugging Face GPT-2 checkpoints <-> a GPTModel's weights: the layout, the reader and the writer.

What `minigpt.pretrained` (the public module: `load_pretrained`, `load_weights_into_gpt`,
`save_pretrained`, ...) and `GPTModel.from_pretrained` / `save_pretrained` run. It needs only the
config (`minigpt.config`), not `minigpt.model`: the model class comes in as an argument
(`load_pretrained_into`), so `minigpt.model` can import this module without an import circle.

The book (ch. 5.5) loads OpenAI's TensorFlow checkpoint; here the source is the safetensors file
that Hugging Face's `transformers` writes for `GPT2LMHeadModel` (the `model.safetensors` of the
hub's `gpt2`, `gpt2-medium`, ... repositories). Its names and layout differ from the book's:

    Hugging Face (GPT-2)               minigpt (the book)                  conversion
    wte.weight (V, C)                  tok_emb.weight                      as is
    wpe.weight (L, C)                  pos_emb.weight                      as is
    h.N.ln_1.weight / .bias            trf_blocks.N.norm1.scale / .shift   as is
    h.N.attn.c_attn.weight (C, 3C)     att.W_query/W_key/W_value.weight    split in 3 columns, transpose
    h.N.attn.c_attn.bias (3C,)         att.W_query/W_key/W_value.bias      split in 3
    h.N.attn.c_proj.weight (C, C)      att.out_proj.weight                 transpose
    h.N.ln_2.*                         trf_blocks.N.norm2.*                as is
    h.N.mlp.c_fc.weight (C, 4C)        ff.layers.0.weight                  transpose
    h.N.mlp.c_proj.weight (4C, C)      ff.layers.2.weight                  transpose
    ln_f.weight / .bias                final_norm.scale / .shift           as is
    (lm_head.weight, tied to wte)      out_head.weight (tied)              shared

GPT-2's "Conv1D" layers compute x @ W + b with W of shape (in, out), the transpose of Linear's
(out, in). Keys may carry the `transformer.` prefix (what `save_pretrained` writes) or not (the
hub's original files); `h.N.attn.bias` and `h.N.attn.masked_bias` are causal-mask buffers, not
weights, and are skipped.

Tensors are read one at a time (`SafetensorsReader`), straight into the model's arrays where the
layout allows, so loading never holds a second copy of the checkpoint in memory.

References: Raschka, "Build a Large Language Model (From Scratch)", ch. 5.5 (load_weights_into_gpt);
Hugging Face transformers, `modeling_gpt2.py` and `pytorch_utils.Conv1D`; the safetensors format.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from autograd.bf16 import is_bfloat16, require_ml_dtypes, to_bfloat16_array
from minigpt.checkpoint import atomic_save_safetensors
from minigpt.config import GPTConfig
from minigpt.nn import skip_init

__all__ = [
    "load_pretrained_into",
    "load_weights_into_gpt",
    "save_pretrained",
    "config_from_hf",
    "config_to_hf",
    "gpt2_layout",
    "gpt2_to_minigpt",
    "minigpt_to_gpt2",
    "SafetensorsReader",
    "cast_for_file",
]

_BUFFER_SUFFIXES = (".attn.bias", ".attn.masked_bias")  # causal masks stored as buffers, not weights
_PREFIX = "transformer."


class Part(NamedTuple):
    """Where one Hugging Face tensor (or a column block of it) goes in the minigpt model.

    Attributes:
        name: the minigpt parameter name (`trf_blocks.0.att.W_key.weight`).
        columns: the slice of the tensor's last dimension that belongs to it (c_attn holds query,
            key and value side by side), or None for the whole tensor.
        transpose: True for Conv1D weights, stored (in, out) where Linear wants (out, in).
    """

    name: str
    columns: slice | None
    transpose: bool


def gpt2_layout(cfg: GPTConfig) -> dict[str, tuple[tuple, list[Part]]]:
    """The Hugging Face GPT-2 tensors a model of this config has: name -> (shape, parts).

    Names are without the `transformer.` prefix; `lm_head.weight` is listed only for an untied head.
    """
    emb_dim, vocab_size = cfg.emb_dim, cfg.vocab_size
    layout = {
        "wte.weight": ((vocab_size, emb_dim), [Part("tok_emb.weight", None, False)]),
        "wpe.weight": ((cfg.context_length, emb_dim), [Part("pos_emb.weight", None, False)]),
    }
    query, key, value = slice(0, emb_dim), slice(emb_dim, 2 * emb_dim), slice(2 * emb_dim, 3 * emb_dim)
    for n in range(cfg.n_layers):
        hf, our = f"h.{n}.", f"trf_blocks.{n}."
        layout[hf + "ln_1.weight"] = ((emb_dim,), [Part(our + "norm1.scale", None, False)])
        layout[hf + "ln_1.bias"] = ((emb_dim,), [Part(our + "norm1.shift", None, False)])
        layout[hf + "attn.c_attn.weight"] = ((emb_dim, 3 * emb_dim), [
            Part(our + "att.W_query.weight", query, True),
            Part(our + "att.W_key.weight", key, True),
            Part(our + "att.W_value.weight", value, True),
        ])
        if cfg.qkv_bias:
            layout[hf + "attn.c_attn.bias"] = ((3 * emb_dim,), [
                Part(our + "att.W_query.bias", query, False),
                Part(our + "att.W_key.bias", key, False),
                Part(our + "att.W_value.bias", value, False),
            ])
        layout[hf + "attn.c_proj.weight"] = ((emb_dim, emb_dim), [Part(our + "att.out_proj.weight", None, True)])
        layout[hf + "attn.c_proj.bias"] = ((emb_dim,), [Part(our + "att.out_proj.bias", None, False)])
        layout[hf + "ln_2.weight"] = ((emb_dim,), [Part(our + "norm2.scale", None, False)])
        layout[hf + "ln_2.bias"] = ((emb_dim,), [Part(our + "norm2.shift", None, False)])
        layout[hf + "mlp.c_fc.weight"] = ((emb_dim, 4 * emb_dim), [Part(our + "ff.layers.0.weight", None, True)])
        layout[hf + "mlp.c_fc.bias"] = ((4 * emb_dim,), [Part(our + "ff.layers.0.bias", None, False)])
        layout[hf + "mlp.c_proj.weight"] = ((4 * emb_dim, emb_dim), [Part(our + "ff.layers.2.weight", None, True)])
        layout[hf + "mlp.c_proj.bias"] = ((emb_dim,), [Part(our + "ff.layers.2.bias", None, False)])
    layout["ln_f.weight"] = ((emb_dim,), [Part("final_norm.scale", None, False)])
    layout["ln_f.bias"] = ((emb_dim,), [Part("final_norm.shift", None, False)])
    if not cfg.tie_weights:
        layout["lm_head.weight"] = ((vocab_size, emb_dim), [Part("out_head.weight", None, False)])
    return layout


def _part_of(array: np.ndarray, part: Part) -> np.ndarray:
    """The block of a Hugging Face tensor that fills one minigpt parameter."""
    block = array if part.columns is None else array[..., part.columns]
    return block.T if part.transpose else block


def gpt2_to_minigpt(arrays: Mapping[str, np.ndarray], cfg: GPTConfig) -> dict[str, np.ndarray]:
    """Convert Hugging Face GPT-2 arrays (with or without the prefix) to minigpt parameter names.

    Only the names of `gpt2_layout(cfg)` are read; buffers and other keys are ignored. The result
    has the keys of `GPTModel(cfg).state_dict()` (a tied head under both of its names), so it
    loads with `model.load_state_dict`.
    """
    bare = {_strip_prefix(name): array for name, array in arrays.items()}
    converted = {}
    for name, (_, parts) in gpt2_layout(cfg).items():
        for part in parts:
            converted[part.name] = np.ascontiguousarray(_part_of(np.asarray(bare[name]), part))
    if cfg.tie_weights:
        converted["out_head.weight"] = converted["tok_emb.weight"]  # state_dict lists a tied head too
    return converted


def minigpt_to_gpt2(arrays: Mapping[str, np.ndarray], cfg: GPTConfig, prefix: str = _PREFIX) -> dict[str, np.ndarray]:
    """The inverse of `gpt2_to_minigpt`: minigpt-named arrays (weights or their gradients) to
    Hugging Face GPT-2 names and layout (Conv1D transposed back, query/key/value concatenated).

    Args:
        arrays: minigpt name -> array, e.g. `model.state_dict()` or each parameter's `.grad`.
        cfg: the model's config. prefix: put before every name except `lm_head.weight`.
    """
    converted = {}
    for name, (_, parts) in gpt2_layout(cfg).items():
        blocks = [arrays[part.name].T if part.transpose else arrays[part.name] for part in parts]
        array = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=-1)
        converted[name if name == "lm_head.weight" else prefix + name] = np.ascontiguousarray(array)
    return converted


def _strip_prefix(name: str) -> str:
    return name[len(_PREFIX):] if name.startswith(_PREFIX) else name


def config_from_hf(hf_config: Mapping, **overrides) -> GPTConfig:
    """A GPTConfig from a Hugging Face GPT-2 `config.json` (as a dict).

    n_embd -> emb_dim, n_layer -> n_layers, n_head -> n_heads, n_positions -> context_length,
    vocab_size, resid_pdrop -> drop_rate, tie_word_embeddings -> tie_weights; qkv_bias is True
    (GPT-2's c_attn always has a bias).

    Raises:
        ValueError: a setting this model does not implement (another activation, LayerNorm
            epsilon, inner size or attention scaling), naming it.
    """
    def setting(key, default=None):
        return hf_config.get(key, default)

    problems = []
    if setting("model_type", "gpt2") != "gpt2":
        problems.append(f"model_type is {setting('model_type')!r}, expected 'gpt2'")
    if setting("activation_function", "gelu_new") not in ("gelu_new", "gelu_pytorch_tanh"):
        problems.append(f"activation_function {setting('activation_function')!r} is not GPT-2's tanh GELU ('gelu_new')")
    if setting("layer_norm_epsilon", 1e-5) != 1e-5:
        problems.append(f"layer_norm_epsilon is {setting('layer_norm_epsilon')}, minigpt's LayerNorm uses 1e-5")
    if setting("n_inner") not in (None, 4 * setting("n_embd", 0)):
        problems.append(f"n_inner is {setting('n_inner')}, minigpt's FeedForward uses 4 * n_embd")
    if setting("scale_attn_by_inverse_layer_idx", False) or not setting("scale_attn_weights", True):
        problems.append("attention scaling other than 1/sqrt(head size) is not supported")
    missing = [key for key in ("vocab_size", "n_positions", "n_embd", "n_head", "n_layer") if key not in hf_config]
    if missing:
        problems.append(f"missing keys {missing}")
    if problems:
        raise ValueError("GPT-2 config not supported: " + "; ".join(problems))
    fields = dict(
        vocab_size=setting("vocab_size"),
        context_length=setting("n_positions"),
        emb_dim=setting("n_embd"),
        n_heads=setting("n_head"),
        n_layers=setting("n_layer"),
        # GPT-2 has three dropout rates (embeddings, attention, residual), equal in every released
        # config; the book's model has one, so the residual rate stands for all.
        drop_rate=float(setting("resid_pdrop", 0.1)),
        qkv_bias=True,
        tie_weights=bool(setting("tie_word_embeddings", True)),
    )
    fields.update(overrides)
    return GPTConfig(**fields)


def _config_from_shapes(shapes: Mapping[str, tuple], overrides: dict) -> GPTConfig:
    """Guess the config of a bare checkpoint from its tensor shapes (no config.json next to it).

    The number of heads is not visible in any shape: unless `n_heads` is given it is taken as
    emb_dim / 64, the head size of every released GPT-2.
    """
    for needed in ("wte.weight", "wpe.weight"):
        if needed not in shapes:
            raise ValueError(f"not a GPT-2 checkpoint: no {needed} (nor {_PREFIX}{needed}) and no config.json")
    vocab_size, emb_dim = shapes["wte.weight"]
    context_length = shapes["wpe.weight"][0]
    n_layers = len({name.split(".")[1] for name in shapes if name.startswith("h.")})
    fields = dict(
        vocab_size=vocab_size, context_length=context_length, emb_dim=emb_dim, n_heads=emb_dim // 64,
        n_layers=n_layers, drop_rate=0.1, qkv_bias=True, tie_weights="lm_head.weight" not in shapes,
    )
    fields.update(overrides)
    return GPTConfig(**fields)


def _resolve_paths(path) -> tuple[str, str | None]:
    """(weights file, config.json or None) for a checkpoint directory, a .safetensors file, or a
    GPT-2 name ("gpt2-small", ...), which is downloaded into the cache first (see minigpt.hub)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        from minigpt.hub import MODEL_REPOS, download

        if path in MODEL_REPOS:
            path = download(path)
        else:
            raise FileNotFoundError(
                f"no checkpoint at {path!r}: expected a directory with model.safetensors, a .safetensors "
                f"file, or one of the names {', '.join(MODEL_REPOS)}"
            )
    if os.path.isdir(path):
        weights = os.path.join(path, "model.safetensors")
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"{path} is a directory without model.safetensors")
        config = os.path.join(path, "config.json")
        return weights, config if os.path.isfile(config) else None
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path} (expected a directory with model.safetensors or a .safetensors file)")
    config = os.path.join(os.path.dirname(os.path.abspath(path)), "config.json")
    return path, config if os.path.isfile(config) else None


def load_pretrained_into(model_class, path, dtype=np.float32, **overrides):
    """Build a `model_class` (GPTModel) from a Hugging Face GPT-2 safetensors checkpoint.

    What `minigpt.pretrained.load_pretrained` and `GPTModel.from_pretrained` run; the class is an
    argument so that this module needs no `minigpt.model` (which imports it for those methods).

    Memory: the model is allocated once (uninitialised, see `minigpt.nn.skip_init`) and the file's
    tensors are read one at a time into it, so the peak is the model plus its largest tensor.

    Args:
        model_class: `minigpt.model.GPTModel` (or a subclass): called as `model_class(cfg, rng=0)`.
        path: "gpt2-small", "gpt2-medium", "gpt2-large" or "gpt2-xl" (downloaded once into the
            cache, see `minigpt.hub.download`), a directory holding `model.safetensors` (and
            usually `config.json`), or the `.safetensors` file itself (its directory's
            config.json is used when present; otherwise the config is read off the tensor
            shapes, see `_config_from_shapes`).
        dtype: the model's parameter dtype: float32, or float64 for exact comparisons (the
            float32 file values are then represented exactly).
        **overrides: GPTConfig fields to change, e.g. `drop_rate=0.0` or `n_heads=12`.

    Returns:
        The model in eval mode (dropout off), as Hugging Face's from_pretrained returns it.

    Raises:
        FileNotFoundError: no checkpoint at `path` and not a known name.
        minigpt.hub.DownloadError: a named model could not be downloaded (no network: the
            message names the URL and where to put the file by hand).
        ValueError: missing, unexpected or mis-shaped tensors (every one named, with the shape
            expected and the shape found), or an unsupported config (see `config_from_hf`).
    """
    weights_path, config_path = _resolve_paths(path)
    with SafetensorsReader(weights_path) as checkpoint:
        stored = {_strip_prefix(name): name for name in checkpoint.keys()}  # bare name -> stored name
        shapes = {name: checkpoint.shape(stored[name]) for name in stored}
        if config_path is not None:
            with open(config_path, encoding="utf-8") as file:
                cfg = config_from_hf(json.load(file), **overrides)
        else:
            cfg = _config_from_shapes(shapes, overrides)
        layout = gpt2_layout(cfg)
        _check_tensors(layout, shapes, weights_path)

        with skip_init():  # every weight is overwritten from the file below
            model = model_class(cfg, rng=0)
        model.to(dtype)
        parameters = dict(model.named_parameters(remove_duplicate=False))
        for name, (_, parts) in layout.items():
            first = parameters[parts[0].name].data
            if len(parts) == 1 and not parts[0].transpose and checkpoint.dtype(stored[name]) == first.dtype:
                checkpoint.read_into(stored[name], first)  # straight from the file into the weight
                continue
            array = checkpoint.read(stored[name])  # one tensor at a time: the only temporary
            for part in parts:
                # In place and cast to the model's dtype: the parameters keep their own arrays.
                parameters[part.name].data[...] = _part_of(array, part)
        if cfg.tie_weights and "lm_head.weight" in stored:
            # Some writers store the tied head anyway; it must then equal the embedding.
            if not np.array_equal(checkpoint.read(stored["lm_head.weight"]), parameters["tok_emb.weight"].data):
                raise ValueError(
                    f"{weights_path}: lm_head.weight differs from wte.weight, but the config ties them "
                    "(tie_word_embeddings); pass tie_weights=False to load a separate head"
                )
    return model.eval()


class SafetensorsReader:
    """Read the tensors of a safetensors file one at a time, with plain reads into given arrays.

    `safetensors.safe_open` memory-maps the file, and every page it has read stays mapped (and
    counted in the process's resident memory) until the file is closed: loading a model through
    it peaks at the model plus the whole file, twice the model. Here each tensor is read with
    `readinto`, straight into the parameter when its layout allows, so the peak is the model
    plus the largest tensor that needs a transpose or a split. The format (a little-endian
    uint64 header length, a JSON header of names, dtypes, shapes and byte offsets, then the
    data) is the safetensors specification; files are written with the safetensors library.

    BF16 tensors (how Llama 3 and Qwen3 ship) are read as `ml_dtypes.bfloat16` arrays, bit for
    bit; assigning one into a float32 parameter (`param.data[...] = reader.read(name)`) widens it
    exactly. This needs the optional ml_dtypes package (autograd/bf16.py).

    Raises:
        ValueError: not a safetensors file, or a dtype NumPy cannot hold (F8_E4M3, ...).
        ImportError: a BF16 tensor without ml_dtypes (`pip install "minigpt[bfloat16]"`).
    """

    _DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
               "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}

    def __init__(self, path: str):
        self.path = path
        self._file = open(path, "rb")
        prefix = self._file.read(8)
        header_size = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 0 < header_size < 100_000_000:
            self._file.close()
            raise ValueError(f"{path}: not a safetensors file (bad header length)")
        try:
            self._header = json.loads(self._file.read(header_size))
        except (json.JSONDecodeError, UnicodeDecodeError):
            self._file.close()
            raise ValueError(f"{path}: not a safetensors file (unreadable header)") from None
        self._header.pop("__metadata__", None)
        self._data_start = 8 + header_size

    def __enter__(self) -> "SafetensorsReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self._file.close()

    def keys(self) -> list[str]:
        """The tensor names, in file order."""
        return list(self._header)

    def shape(self, name: str) -> tuple:
        """The shape of tensor `name`."""
        return tuple(self._header[name]["shape"])

    def dtype(self, name: str) -> np.dtype:
        """The NumPy dtype of tensor `name` (`ml_dtypes.bfloat16` for BF16)."""
        code = self._header[name]["dtype"]
        if code == "BF16":
            return np.dtype(require_ml_dtypes().bfloat16)
        if code not in self._DTYPES:
            raise ValueError(f"{self.path}: tensor {name} has dtype {code}, which NumPy cannot represent")
        return np.dtype(self._DTYPES[code])

    def read_into(self, name: str, out: np.ndarray) -> np.ndarray:
        """Fill the C-contiguous array `out` (of the tensor's shape and dtype) from the file."""
        begin, end = self._header[name]["data_offsets"]
        if out.shape != self.shape(name) or out.dtype != self.dtype(name) or not out.flags.c_contiguous:
            raise ValueError(f"read_into {name}: needs a contiguous {self.dtype(name)} array of shape {self.shape(name)}")
        if out.nbytes != end - begin:
            raise ValueError(f"{self.path}: tensor {name} holds {end - begin} bytes, its shape needs {out.nbytes}")
        self._file.seek(self._data_start + begin)
        view = memoryview(out.reshape(-1).view(np.uint8))
        if self._file.readinto(view) != out.nbytes:
            raise ValueError(f"{self.path}: the file ends inside tensor {name} (truncated download?)")
        return out

    def read(self, name: str) -> np.ndarray:
        """Tensor `name` as a new array."""
        return self.read_into(name, np.empty(self.shape(name), dtype=self.dtype(name)))


def _check_tensors(layout: dict, shapes: dict, weights_path: str) -> None:
    """Raise one ValueError naming every missing, unexpected and mis-shaped tensor."""
    missing = [name for name in layout if name not in shapes]
    unexpected = [
        name for name in shapes
        if name not in layout and not name.endswith(_BUFFER_SUFFIXES) and name != "lm_head.weight"
    ]
    mismatched = [
        f"{name}: expected shape {layout[name][0]}, found {shapes[name]}"
        for name in layout if name in shapes and shapes[name] != layout[name][0]
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected)}")
    if mismatched:
        problems.append(f"mis-shaped tensors: {'; '.join(mismatched)}")
    if problems:
        raise ValueError(f"{weights_path} does not match the GPT-2 config: " + " | ".join(problems))


def load_weights_into_gpt(gpt, params: Mapping[str, np.ndarray]):
    """Copy OpenAI's GPT-2 weights into an existing GPTModel (book ch. 5.5, `load_weights_into_gpt`).

    The book's function takes the parameter dict it reads from OpenAI's TensorFlow checkpoint;
    here `params` is the dict of a Hugging Face GPT-2 safetensors file, e.g.
    `safetensors.numpy.load_file("model.safetensors")` (names with or without `transformer.`).
    As in the book, the model must have GPT-2's shapes: `qkv_bias=True` and the checkpoint's
    context length (for GPT_CONFIG_124M: `dict(GPT_CONFIG_124M, qkv_bias=True)`).

    Args:
        gpt: the model to fill (its parameters are overwritten in place).
        params: Hugging Face GPT-2 name -> array.

    Returns:
        `gpt`, for chaining.

    Raises:
        ValueError: missing, unexpected or mis-shaped tensors, each named (a c_attn.bias with a
            model built with qkv_bias=False is reported as unexpected).
    """
    bare = {_strip_prefix(name): np.asarray(array) for name, array in params.items()}
    shapes = {name: array.shape for name, array in bare.items()}
    layout = gpt2_layout(gpt.cfg)
    if gpt.cfg.tie_weights and "lm_head.weight" in bare and not np.array_equal(bare["lm_head.weight"], bare["wte.weight"]):
        raise ValueError("params: lm_head.weight differs from wte.weight, but the model ties them (tie_weights=True)")
    _check_tensors(layout, shapes, "params")
    gpt.load_state_dict(gpt2_to_minigpt(bare, gpt.cfg))
    return gpt


def config_to_hf(cfg: GPTConfig) -> dict:
    """The Hugging Face GPT-2 `config.json` dict of a GPTConfig (the inverse of `config_from_hf`)."""
    hf_config = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.context_length,
        "n_embd": cfg.emb_dim,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_inner": None,
        "activation_function": "gelu_new",
        "resid_pdrop": cfg.drop_rate,
        "embd_pdrop": cfg.drop_rate,
        "attn_pdrop": cfg.drop_rate,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "tie_word_embeddings": cfg.tie_weights,
        "torch_dtype": "float32",
    }
    if cfg.vocab_size == 50257:  # GPT-2's tokenizer: <|endoftext|> begins and ends texts
        hf_config.update(bos_token_id=50256, eos_token_id=50256)
    return hf_config


def cast_for_file(tensors: Mapping[str, np.ndarray], dtype=None) -> dict[str, np.ndarray]:
    """The floating tensors converted to the file dtype `dtype` (None keeps each array's own).

    `dtype` may be `torch.bfloat16` / "bfloat16": each float32 value is rounded to the nearest
    bfloat16 (ties to even, as PyTorch's `.to(torch.bfloat16)`) and stored as an ml_dtypes
    bfloat16 array, which the safetensors library writes as BF16 (2 bytes per value). Integer
    tensors keep their dtype.

    Raises:
        ImportError: bfloat16 without ml_dtypes. TypeError: a dtype NumPy does not know.
    """
    if dtype is None:
        return dict(tensors)
    if is_bfloat16(dtype):
        convert = to_bfloat16_array
    else:
        file_dtype = np.dtype(dtype)
        def convert(array):
            return array.astype(file_dtype)
    return {name: convert(array) if array.dtype.kind == "f" else array for name, array in tensors.items()}


def save_pretrained(model, directory, dtype=None) -> str:
    """Write `model.safetensors` and `config.json` in the Hugging Face GPT-2 layout (`model.save_pretrained`).

    transformers' `GPT2LMHeadModel.from_pretrained(directory)` loads the result, and so does
    `GPTModel.from_pretrained(directory)`, reproducing the logits exactly. GPT-2 always has a
    bias on its query/key/value projection: a model built with `qkv_bias=False` (the book's
    GPT_CONFIG_124M) is written with zero biases, which computes the same function. An untied
    output head is written as `lm_head.weight` with `tie_word_embeddings: false`. Tensors keep the
    model's dtype. Both files are written to temporary names and renamed into place.

    Args:
        model: the GPTModel to export.
        directory: created if missing.
        dtype: the tensors' dtype in the file: None (the model's), np.float32, or
            `torch.bfloat16` (half the size; see `cast_for_file`; config.json then says
            `"torch_dtype": "bfloat16"`).

    Returns:
        The directory.

    NOTE: the conversion (transposes, the concatenated c_attn) makes one copy of the weights, so
    exporting needs about twice the model's memory.
    """
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    cfg = model.cfg
    state = model.state_dict()
    if not cfg.qkv_bias:
        for n in range(cfg.n_layers):
            for projection in ("W_query", "W_key", "W_value"):
                state[f"trf_blocks.{n}.att.{projection}.bias"] = np.zeros(cfg.emb_dim, dtype=state["tok_emb.weight"].dtype)
    export_cfg = cfg.replace(qkv_bias=True)
    tensors = cast_for_file(minigpt_to_gpt2(state, export_cfg), dtype)
    # transformers only loads safetensors files whose metadata names the PyTorch format.
    atomic_save_safetensors(os.path.join(directory, "model.safetensors"), tensors, {"format": "pt"})
    config_path = os.path.join(directory, "config.json")
    hf_config = config_to_hf(export_cfg)
    if dtype is not None:
        hf_config["torch_dtype"] = "bfloat16" if is_bfloat16(dtype) else np.dtype(dtype).name
    with open(config_path + ".tmp", "w", encoding="utf-8") as file:
        json.dump(hf_config, file, indent=2)
    os.replace(config_path + ".tmp", config_path)
    return directory
