"""The model architectures the commands can build: "gpt2" (GPTModel), "llama3" (Llama3Model), "qwen3" (Qwen3Model).

What `minigpt train --arch`, `minigpt generate` and `minigpt chat` ask: which class a name or a
checkpoint means, which config a preset resolves to, and how a Hugging Face folder is read. A
run's checkpoint records its architecture ("arch" in its run info; older runs have none and are
GPT-2); a Hugging Face folder says it in config.json ("model_type": "gpt2", "llama", "qwen3").

Presets: every GPTModel preset for "gpt2"; for "llama3" and "qwen3" their models' presets
("llama3-tiny", "qwen3-char", "qwen3-0.6b", ...), where the short names of the training recipes
("tiny", "char") mean the architecture's model of that size ("--arch qwen3 --preset char" is
"qwen3-char").
"""

from __future__ import annotations

import importlib
import json
import os

__all__ = ["ARCHITECTURES", "model_class", "resolve_preset", "new_model_config", "config_from_run_info",
           "model_from_run_info", "hf_model_type", "load_hf_folder", "hf_folder_tokenizer"]

ARCHITECTURES = {"gpt2": ("minigpt.model", "GPTModel"), "llama3": ("minigpt.llama3", "Llama3Model"),
                 "qwen3": ("minigpt.qwen3", "Qwen3Model")}
_HF_TYPES = {"gpt2": "gpt2", "llama": "llama3", "qwen3": "qwen3"}  # config.json model_type -> arch


def model_class(arch: str):
    """The model class of `arch` ("gpt2", "llama3", "qwen3").

    Raises:
        ValueError: an unknown architecture (the message lists them).
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    module, name = ARCHITECTURES[arch]
    return getattr(importlib.import_module(module), name)


def presets(arch: str) -> dict:
    """The preset table of `arch`."""
    if arch == "gpt2":
        from minigpt.config import PRESETS

        return PRESETS
    return model_class(arch)._presets


def resolve_preset(arch: str, preset: str) -> str:
    """The preset name of `arch` that `preset` means ("tiny" with "qwen3" -> "qwen3-tiny").

    Raises:
        KeyError: no such preset for the architecture (the message lists its presets).
    """
    table = presets(arch)
    for name in (preset, f"{arch}-{preset}"):
        if name in table:
            return name
    raise KeyError(f"unknown {arch} preset {preset!r}; choose one of {', '.join(table)}")


def new_model_config(arch: str, preset, **overrides):
    """The model config of a preset name or a config dict: GPTConfig for "gpt2", a Llama3Config for the others."""
    if arch == "gpt2":
        from minigpt.config import get_config

        return get_config(preset, **overrides)
    from minigpt.llama3 import get_llama3_config

    cls = model_class(arch)
    preset = resolve_preset(arch, preset) if isinstance(preset, str) else preset
    return get_llama3_config(preset, cls._presets, cls._required, cls.__name__, **overrides)


def config_from_run_info(run_info: dict):
    """The model config saved in a checkpoint's run info (its "arch", "gpt2" when absent)."""
    arch = run_info.get("arch", "gpt2")
    return new_model_config(arch, dict(run_info["model_config"])) if arch != "gpt2" else _gpt_config(run_info)


def _gpt_config(run_info: dict):
    from minigpt.config import get_config

    return get_config(run_info["model_config"])


def model_from_run_info(run_info: dict, model_state=None):
    """The model of a checkpoint (built with rng=0, then its weights loaded when `model_state` is given)."""
    model = model_class(run_info.get("arch", "gpt2"))(config_from_run_info(run_info), rng=0)
    if model_state is not None:
        model.load_state_dict(model_state)
    return model


def hf_model_type(folder) -> str | None:
    """The architecture ("gpt2", "llama3", "qwen3") of a Hugging Face folder's config.json, None
    without one (a bare .safetensors file, or a GPT-2 name to download)."""
    path = os.path.join(os.fspath(folder), "config.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as file:
        model_type = json.load(file).get("model_type")
    if model_type not in _HF_TYPES:
        raise ValueError(f"{folder}: config.json has model_type {model_type!r}; minigpt reads {', '.join(_HF_TYPES)}")
    return _HF_TYPES[model_type]


def load_hf_folder(folder, **overrides):
    """(model, arch) of a Hugging Face checkpoint folder or GPT-2 name (`from_pretrained` of its class)."""
    arch = (hf_model_type(folder) if os.path.isdir(os.fspath(folder)) else None) or "gpt2"
    return model_class(arch).from_pretrained(folder, **overrides), arch


def hf_folder_tokenizer(folder, arch: str):
    """The tokenizer shipped in a Llama 3 (original/tokenizer.model) or Qwen3 (tokenizer.json) folder.

    Raises:
        FileNotFoundError: the folder has no tokenizer file.
        ImportError: this installation has no Llama 3 / Qwen3 tokenizer (minigpt.llama3_tokenizer,
            minigpt.qwen3_tokenizer).
    """
    folder = os.fspath(folder)
    if arch == "llama3":
        path = os.path.join(folder, "original", "tokenizer.model")
        path = path if os.path.isfile(path) else os.path.join(folder, "tokenizer.model")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{folder}: no Llama 3 tokenizer (original/tokenizer.model)")
        from minigpt.llama3_tokenizer import Llama3Tokenizer  # the tokenizers' module (issue 23, item 4)

        return Llama3Tokenizer(path)
    path = os.path.join(folder, "tokenizer.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder}: no Qwen3 tokenizer (tokenizer.json)")
    from minigpt.qwen3_tokenizer import Qwen3Tokenizer

    return Qwen3Tokenizer(path, apply_chat_template=False)
