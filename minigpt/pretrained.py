"""OpenAI's GPT-2 weights in a GPTModel (book ch. 5.5): `load_pretrained`, `load_weights_into_gpt`,
`save_pretrained`, and the Hugging Face layout conversions.

The book loads OpenAI's TensorFlow checkpoint; minigpt reads the safetensors file Hugging Face's
`transformers` writes for `GPT2LMHeadModel`. The reader, the writer and the name/layout table
live in `minigpt.hf_weights` (below `minigpt.model`, which uses them for
`GPTModel.from_pretrained`); this module is where a reader of chapter 5.5 looks for them, and it
adds `load_pretrained`, which builds a `GPTModel`.

References: Raschka, "Build a Large Language Model (From Scratch)", ch. 5.5 (load_weights_into_gpt);
Hugging Face transformers, `modeling_gpt2.py`; the safetensors format.
"""

from __future__ import annotations

import numpy as np

from minigpt.hf_weights import (SafetensorsReader, config_from_hf, config_to_hf, gpt2_layout, gpt2_to_minigpt,
                                load_pretrained_into, load_weights_into_gpt, minigpt_to_gpt2, save_pretrained)
from minigpt.model import GPTModel

__all__ = [
    "load_pretrained",
    "load_weights_into_gpt",
    "save_pretrained",
    "config_from_hf",
    "config_to_hf",
    "gpt2_layout",
    "gpt2_to_minigpt",
    "minigpt_to_gpt2",
    "SafetensorsReader",
]


def load_pretrained(path, dtype=np.float32, **overrides) -> GPTModel:
    """Build a GPTModel from a Hugging Face GPT-2 safetensors checkpoint (`GPTModel.from_pretrained`).

    Memory: the model is allocated once, uninitialised, and the file's tensors are read one at a
    time into it, so the peak is the model plus its largest tensor.

    Args:
        path: "gpt2-small", "gpt2-medium", "gpt2-large" or "gpt2-xl" (downloaded once into the
            cache, see `minigpt.hub.download`), a directory holding `model.safetensors` (and
            usually `config.json`), or the `.safetensors` file itself.
        dtype: the model's parameter dtype: float32, or float64 for exact comparisons.
        **overrides: GPTConfig fields to change, e.g. `drop_rate=0.0` or `n_heads=12`.

    Returns:
        The model in eval mode (dropout off), as Hugging Face's from_pretrained returns it.

    Raises:
        FileNotFoundError, minigpt.hub.DownloadError, ValueError: see
        `minigpt.hf_weights.load_pretrained_into`, which does the work.
    """
    return load_pretrained_into(GPTModel, path, dtype=dtype, **overrides)
