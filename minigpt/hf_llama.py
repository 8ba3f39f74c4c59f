"""Hugging Face Llama 3 and Qwen3 checkpoints -> `Llama3Model` / `Qwen3Model` (the book's `load_weights_into_llama`).

A checkpoint folder as the hub ships it: `config.json` and either one `model.safetensors` or
several shards with `model.safetensors.index.json` (its "weight_map" names the shard of every
tensor). The names map one to one, no transposes (both use Linear's (out, in) weights):

    Hugging Face                                  minigpt (the book)
    model.embed_tokens.weight                     tok_emb.weight
    model.layers.N.self_attn.q_proj.weight        trf_blocks.N.att.W_query.weight
    model.layers.N.self_attn.k_proj / v_proj      trf_blocks.N.att.W_key / W_value.weight
    model.layers.N.self_attn.o_proj.weight        trf_blocks.N.att.out_proj.weight
    model.layers.N.self_attn.q_norm / k_norm      trf_blocks.N.att.q_norm / k_norm.scale   (Qwen3)
    model.layers.N.mlp.gate_proj / up_proj        trf_blocks.N.ff.fc1 / fc2.weight
    model.layers.N.mlp.down_proj.weight           trf_blocks.N.ff.fc3.weight
    model.layers.N.input_layernorm.weight         trf_blocks.N.norm1.weight (Llama) / .scale (Qwen3)
    model.layers.N.post_attention_layernorm       trf_blocks.N.norm2
    model.norm.weight                             final_norm.weight / .scale
    lm_head.weight (absent when tied)             out_head.weight (tok_emb.weight when tied)

config.json -> the book's config dict: hidden_size -> emb_dim, intermediate_size -> hidden_dim,
num_attention_heads -> n_heads, num_key_value_heads -> n_kv_groups, num_hidden_layers ->
n_layers, max_position_embeddings -> context_length, rope_theta -> rope_base, a "llama3"
rope_scaling -> rope_freq (original_max_position_embeddings -> original_context_length),
head_dim, tie_word_embeddings -> tie_weights; Qwen3 always has qk_norm. Older files keep
rope_theta and rope_scaling at the top level, transformers 5 writes them in "rope_parameters":
both are read.

Tensors are read one at a time with `minigpt.hf_weights.SafetensorsReader` straight into the
parameters when the dtypes agree, so the peak memory is the model plus one tensor.

References: Raschka, LLMs-from-scratch ch05/07_gpt_to_llama (`load_weights_into_llama`) and
ch05/11_qwen3 (`load_weights_into_qwen`); Hugging Face transformers `LlamaConfig`,
`Qwen3Config`, `modeling_llama.py`, and the sharded-checkpoint index format.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from minigpt.hf_weights import SafetensorsReader
from minigpt.nn.layers import skip_init

__all__ = ["config_from_hf", "hf_to_minigpt_name", "load_hf_checkpoint", "checkpoint_shards"]

_LAYER_NAMES = {
    "self_attn.q_proj.weight": "att.W_query.weight",
    "self_attn.k_proj.weight": "att.W_key.weight",
    "self_attn.v_proj.weight": "att.W_value.weight",
    "self_attn.o_proj.weight": "att.out_proj.weight",
    "self_attn.q_norm.weight": "att.q_norm.scale",
    "self_attn.k_norm.weight": "att.k_norm.scale",
    "mlp.gate_proj.weight": "ff.fc1.weight",
    "mlp.up_proj.weight": "ff.fc2.weight",
    "mlp.down_proj.weight": "ff.fc3.weight",
    "input_layernorm.weight": "norm1.{norm}",
    "post_attention_layernorm.weight": "norm2.{norm}",
}
_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
_MODEL_TYPES = {"Llama3Model": "llama", "Qwen3Model": "qwen3"}
_EPS = {"llama": 1e-5, "qwen3": 1e-6}


def hf_to_minigpt_name(name: str, norm: str = "weight") -> str | None:
    """The minigpt parameter name of Hugging Face tensor `name`, None for a name of no parameter.

    Args:
        name: e.g. "model.layers.3.mlp.gate_proj.weight".
        norm: the norms' parameter name: "weight" (Llama3Model, torch.nn.RMSNorm) or "scale" (Qwen3Model).

    Example: hf_to_minigpt_name("model.layers.3.mlp.gate_proj.weight") -> "trf_blocks.3.ff.fc1.weight".
    """
    if name == "model.embed_tokens.weight":
        return "tok_emb.weight"
    if name == "model.norm.weight":
        return f"final_norm.{norm}"
    if name == "lm_head.weight":
        return "out_head.weight"
    match = _LAYER.match(name)
    if match and match.group(2) in _LAYER_NAMES:
        return f"trf_blocks.{match.group(1)}." + _LAYER_NAMES[match.group(2)].format(norm=norm)
    return None


def config_from_hf(hf_config: dict, model: str = "Llama3Model") -> dict:
    """The book's config dict of a Hugging Face Llama / Qwen3 `config.json` (see the module docstring).

    Args:
        hf_config: the parsed config.json. model: "Llama3Model" or "Qwen3Model" (the class it is for).

    Raises:
        ValueError: another model_type, or a setting these models do not have (biases, another
            activation, another rms_norm_eps, a sliding window, a RoPE type other than default/llama3);
            the message names the key and its value.
    """
    model_type = hf_config.get("model_type")
    if model_type != _MODEL_TYPES[model]:
        raise ValueError(f"{model}.from_pretrained: config.json has model_type {model_type!r}, expected {_MODEL_TYPES[model]!r}")
    rope = dict(hf_config.get("rope_parameters") or {})
    rope.update({key: value for key, value in (hf_config.get("rope_scaling") or {}).items()})
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    unsupported = {key: hf_config.get(key) for key in ("attention_bias", "mlp_bias", "use_sliding_window") if hf_config.get(key)}
    if hf_config.get("hidden_act", "silu") != "silu":
        unsupported["hidden_act"] = hf_config["hidden_act"]
    if not np.isclose(hf_config.get("rms_norm_eps", _EPS[model_type]), _EPS[model_type], rtol=1e-3):
        unsupported["rms_norm_eps"] = hf_config["rms_norm_eps"]
    if rope_type not in ("default", "llama3"):
        unsupported["rope_type"] = rope_type
    if unsupported:
        raise ValueError(f"{model}.from_pretrained: config.json has settings {model} does not implement: {unsupported}")
    n_heads = hf_config["num_attention_heads"]
    cfg = {
        "vocab_size": hf_config["vocab_size"],
        "context_length": hf_config["max_position_embeddings"],
        "emb_dim": hf_config["hidden_size"],
        "n_heads": n_heads,
        "n_layers": hf_config["num_hidden_layers"],
        "hidden_dim": hf_config["intermediate_size"],
        "head_dim": hf_config.get("head_dim") or hf_config["hidden_size"] // n_heads,
        "qk_norm": model_type == "qwen3",
        "n_kv_groups": hf_config.get("num_key_value_heads") or n_heads,
        "rope_base": float(rope.get("rope_theta", hf_config.get("rope_theta", 10_000.0))),
        "rope_freq": None,
        "dtype": np.float32,
        "tie_weights": bool(hf_config.get("tie_word_embeddings", False)),
    }
    if rope_type == "llama3":
        cfg["rope_freq"] = {"factor": float(rope["factor"]), "low_freq_factor": float(rope["low_freq_factor"]),
                            "high_freq_factor": float(rope["high_freq_factor"]),
                            "original_context_length": int(rope["original_max_position_embeddings"])}
    return cfg


def checkpoint_shards(folder) -> dict[str, list[str]]:
    """Shard file -> the tensor names it holds: `model.safetensors`, or the shards of
    `model.safetensors.index.json` (its "weight_map").

    Raises:
        FileNotFoundError: `folder` is not a directory with config.json and model.safetensors or
            an index, or the index names a shard that is absent.
    """
    folder = os.fspath(folder)
    index = os.path.join(folder, "model.safetensors.index.json")
    single = os.path.join(folder, "model.safetensors")
    if not os.path.isdir(folder) or not os.path.isfile(os.path.join(folder, "config.json")):
        raise FileNotFoundError(f"{folder!r}: expected a checkpoint folder with config.json and model.safetensors "
                                "(or model.safetensors.index.json and its shards)")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as file:
            weight_map = json.load(file)["weight_map"]
        shards: dict[str, list[str]] = {}
        for name, shard in weight_map.items():
            shards.setdefault(os.path.join(folder, shard), []).append(name)
        absent = [path for path in shards if not os.path.isfile(path)]
        if absent:
            raise FileNotFoundError(f"{index} names shards that are not in the folder: {', '.join(map(os.path.basename, absent))}")
        return shards
    if not os.path.isfile(single):
        raise FileNotFoundError(f"{folder!r} has config.json but neither model.safetensors nor model.safetensors.index.json")
    with SafetensorsReader(single) as reader:
        return {single: reader.keys()}


def load_hf_checkpoint(model_class, folder, dtype=np.float32, **overrides):
    """Build a `Llama3Model` or `Qwen3Model` from a Hugging Face checkpoint folder.

    Args:
        model_class: Llama3Model or Qwen3Model (or a subclass), called as model_class(cfg, rng=0).
        folder: the checkpoint folder (config.json + model.safetensors, or sharded with
            model.safetensors.index.json).
        dtype: the parameters' dtype, float32 or float64 (exact comparisons).
        **overrides: config keys to change, e.g. context_length=1024 (smaller RoPE tables and cache).

    Returns:
        The model in eval mode, `model.hf_config` the parsed config.json.

    Raises:
        FileNotFoundError: see `checkpoint_shards`.
        ValueError: an unsupported config (see `config_from_hf`); missing, unexpected or
            mis-shaped tensors (every one named with both shapes); a stored lm_head that differs
            from the embedding although the config ties them.
    """
    shards = checkpoint_shards(folder)
    with open(os.path.join(os.fspath(folder), "config.json"), encoding="utf-8") as file:
        hf_config = json.load(file)
    cfg = dict(config_from_hf(hf_config, _base_name(model_class)), **overrides)
    with skip_init():  # every weight is overwritten below
        model = model_class(cfg, rng=0)
    model.to(dtype)
    parameters = dict(model.named_parameters(remove_duplicate=False))
    norm = "scale" if "final_norm.scale" in parameters else "weight"
    expected = {name for name in parameters if not (cfg["tie_weights"] and name == "out_head.weight")}
    found, problems, tied_head = set(), [], None
    for path, names in shards.items():
        with SafetensorsReader(path) as reader:
            for hf_name in names:
                name = hf_to_minigpt_name(hf_name, norm)
                if name is None or name not in parameters:
                    if not hf_name.endswith("rotary_emb.inv_freq"):  # a buffer some writers keep
                        problems.append(f"unexpected tensor {hf_name}")
                    continue
                if name == "out_head.weight" and cfg["tie_weights"]:
                    tied_head = reader.read(hf_name)  # checked against the embedding below
                    continue
                target = parameters[name].data
                if reader.shape(hf_name) != target.shape:
                    problems.append(f"{hf_name}: expected shape {target.shape}, found {reader.shape(hf_name)}")
                    continue
                _read(reader, hf_name, target)
                found.add(name)
    problems += [f"missing tensor for {name}" for name in sorted(expected - found)]
    if problems:
        raise ValueError(f"{folder}: the checkpoint does not match its config: " + "; ".join(problems))
    if tied_head is not None and not np.array_equal(tied_head.astype(dtype), parameters["tok_emb.weight"].data):
        raise ValueError(f"{folder}: lm_head.weight differs from model.embed_tokens.weight, but config.json ties them "
                         "(tie_word_embeddings); pass tie_weights=False to load a separate head")
    model.hf_config = hf_config
    return model.eval()


def _read(reader: SafetensorsReader, name: str, target: np.ndarray) -> None:
    """Tensor `name` into `target`: straight from the file when the dtypes agree, else converted."""
    try:
        same = reader.dtype(name) == target.dtype
    except ValueError:  # a dtype NumPy cannot name: `read` converts it, if the reader can
        same = False
    if same and target.flags.c_contiguous:
        reader.read_into(name, target)
    else:
        target[...] = reader.read(name)


def _base_name(model_class) -> str:
    """"Llama3Model" or "Qwen3Model" for the class or a subclass of it."""
    for cls in model_class.__mro__:
        if cls.__name__ in _MODEL_TYPES:
            return cls.__name__
    raise TypeError(f"from_pretrained: {model_class.__name__} is neither a Llama3Model nor a Qwen3Model")
