"""Make the Llama 3 and Qwen3 reference fixtures of tests/test_llama3_qwen3_parity.py with Hugging Face transformers.

Run once, in a side environment (never a dependency of minigpt):

    python3 -m venv /tmp/ref-llama
    /tmp/ref-llama/bin/pip install torch==2.13.0 transformers safetensors numpy
    /tmp/ref-llama/bin/python scripts/make_llama_qwen_fixtures.py

Writes, for a small random `LlamaForCausalLM` (separate output head, Llama 3's RoPE frequency
scaling) and a small random `Qwen3ForCausalLM` (tied head, q/k norm, head_dim != hidden/heads):

    tests/fixtures/llama3-tiny/         config.json, model.safetensors (float32), expected.npz
    tests/fixtures/qwen3-tiny-sharded/  config.json, model-0000N-of-0000M.safetensors,
                                        model.safetensors.index.json (sharded), expected.npz

expected.npz, computed in float64 from the float32 weights (model.double(), eager attention):
`input_ids` (2, 16) int64, `logits` (2, 16, V), `loss` (mean cross-entropy of input_ids[:, 1:]
from logits[:, :-1], in float64), and `grad.<name>`: d loss / d parameter for every parameter,
under Hugging Face's names (a tied head has no `grad.lm_head.weight`: the embedding's gradient
is the total). The RMSNorm weights are drawn around 1 so that none is trivially 1.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

COMMON = dict(vocab_size=128, hidden_size=32, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=64, attn_implementation="eager")


def _perturb_norms(model: torch.nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.copy_(1.0 + 0.2 * torch.randn(parameter.shape, generator=generator))


def _expected(model: torch.nn.Module, input_ids: torch.Tensor) -> dict:
    reference = model.double()
    reference.zero_grad()
    logits = reference(input_ids=input_ids).logits  # (B, T, V) float64
    loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1))
    loss.backward()
    arrays = {"input_ids": input_ids.numpy(), "logits": logits.detach().numpy(), "loss": np.array(loss.item())}
    for name, parameter in reference.named_parameters():  # a tied head is listed once, as the embedding
        arrays[f"grad.{name}"] = parameter.grad.numpy()
    return arrays


def make(name: str, model_class, config, shard_size=None) -> None:
    torch.manual_seed(0)
    model = model_class(config).eval()
    _perturb_norms(model, torch.Generator().manual_seed(1))
    folder = os.path.join(FIXTURES, name)
    os.makedirs(folder, exist_ok=True)
    options = {"max_shard_size": shard_size} if shard_size else {}
    model.save_pretrained(folder, **options)  # float32, config.json + safetensors (sharded with an index)
    input_ids = torch.randint(0, config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(2))
    np.savez_compressed(os.path.join(folder, "expected.npz"), **_expected(model, input_ids))
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as file:
        print(name, sorted(os.listdir(folder)), json.load(file).get("architectures"))


def main() -> int:
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    llama = LlamaConfig(**COMMON, rope_theta=500_000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                        rope_scaling={"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192})
    make("llama3-tiny", LlamaForCausalLM, llama)
    qwen = Qwen3Config(**COMMON, head_dim=16, rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)
    make("qwen3-tiny-sharded", Qwen3ForCausalLM, qwen, shard_size="60KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
