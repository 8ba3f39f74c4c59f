"""`minigpt train --arch llama3|qwen3`, resume, `generate` and `chat` on those checkpoints, and
`generate --model` on a Hugging Face Llama 3 / Qwen3 folder (issue 23, item 7).

Each run is a few steps of the character-level presets on the bundled Shakespeare, shrunk by flags.
"""

import os
import shutil

import numpy as np
import pytest

from minigpt.checkpoint import CHECKPOINT_NAME, load_checkpoint
from minigpt.cli import main

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
CHEAP = ["--batch-size", "2", "--eval-batches", "1", "--eval-every", "2", "--sample-tokens", "4", "--context-length", "16",
         "--quiet"]


@pytest.mark.parametrize("arch, model", [("llama3", "Llama3Model"), ("qwen3", "Qwen3Model")])
def test_train_resume_and_generate_with_llama_and_qwen(arch, model, tmp_path, capsys):
    out = str(tmp_path / arch)
    assert main(["train", "--arch", arch, "--preset", "char", "--data", "the-verdict.txt", "--max-steps", "4", "--out", out,
                 *CHEAP]) == 0
    printed = capsys.readouterr().out
    assert '"context_length": 16' in printed and "step      4" in printed
    state = load_checkpoint(os.path.join(out, CHECKPOINT_NAME))[2]["trainer"]
    assert state["run_info"]["arch"] == arch and state["run_info"]["model_config"]["n_kv_groups"] == 2
    assert main(["train", "--resume", out, "--max-steps", "6"]) == 0
    assert "step      6" in capsys.readouterr().out
    assert main(["generate", "--checkpoint", out, "--prompt", "I had", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("I had")
    from minigpt.architectures import model_from_run_info
    assert type(model_from_run_info(state["run_info"])).__name__ == model


def test_bad_arch_presets_and_flags_are_named(tmp_path, capsys):
    with pytest.raises(SystemExit, match="unknown llama3 preset 'gpt2-small'"):
        main(["train", "--arch", "llama3", "--preset", "gpt2-small", "--out", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match="--arch qwen3 has no dropout"):
        main(["train", "--arch", "qwen3", "--drop-rate", "0.1", "--out", str(tmp_path / "b")])


def test_generate_model_reads_a_hugging_face_folder_and_its_tokenizer(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "qwen"
    shutil.copytree(os.path.join(FIXTURES, "qwen3-tiny-sharded"), folder)
    with pytest.raises(SystemExit, match=r"no Qwen3 tokenizer \(tokenizer.json\)"):
        main(["generate", "--model", str(folder), "--prompt", "hi"])

    class Letters:  # a stand-in for the folder's tokenizer: one id per letter
        def encode(self, text):
            return [ord(c) % 128 for c in text]

        def decode(self, ids):
            return "".join(chr(97 + i % 26) for i in ids)

    monkeypatch.setattr("minigpt.architectures.hf_folder_tokenizer", lambda folder, arch: Letters())
    assert main(["generate", "--model", str(folder), "--prompt", "hi", "--max-new-tokens", "3"]) == 0
    text = capsys.readouterr().out.strip()
    assert text.startswith("hi") and len(text) == 5


def test_generate_model_with_a_qwen3_folder_written_here_and_its_tokenizer_json(tmp_path, capsys):
    """A Hugging Face-layout Qwen3 folder (config.json, model.safetensors under HF names,
    tokenizer.json) made from a random Qwen3Model; `generate --model` reads all three."""
    import json

    import autograd
    from minigpt import Qwen3Model
    from minigpt.hf_llama import hf_to_minigpt_name

    folder = tmp_path / "qwen3-folder"
    folder.mkdir()
    shutil.copy(os.path.join(FIXTURES, "llama_qwen_tokenizers", "qwen3-style.tokenizer.json"), folder / "tokenizer.json")
    config = json.loads(open(os.path.join(FIXTURES, "qwen3-tiny-sharded", "config.json")).read())
    config["vocab_size"] = 1510  # the tokenizer's 1,500 ids and its special tokens
    (folder / "config.json").write_text(json.dumps(config))
    model = Qwen3Model(dict(vocab_size=1510, context_length=64, emb_dim=32, n_heads=4, n_layers=2, hidden_dim=80, head_dim=16,
                            qk_norm=True, n_kv_groups=2, rope_base=1e6, tie_weights=True), rng=0)
    names = [f"model.layers.{i}.{part}" for i in range(2) for part in (
        "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
        "self_attn.q_norm.weight", "self_attn.k_norm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
        "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight")] + [
        "model.embed_tokens.weight", "model.norm.weight"]
    state = model.state_dict()
    autograd.save({name: state[hf_to_minigpt_name(name, "scale")] for name in names}, str(folder / "model.safetensors"))
    assert main(["generate", "--model", str(folder), "--prompt", "Every effort moves you", "--max-new-tokens", "4"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Every effort moves you") and len(text.strip()) > len("Every effort moves you")
    np.testing.assert_array_equal(Qwen3Model.from_pretrained(folder).tok_emb.weight.data, model.tok_emb.weight.data)
