"""`--lora RANK [--lora-alpha A]` of `minigpt finetune classify` and `minigpt finetune instruct`: only
the LoRA matrices train, the saved checkpoint is a plain (merged) model that `minigpt classify` /
`minigpt chat` load, and bad flags fail."""

import json
import os

import numpy as np
import pytest
from safetensors import safe_open

from minigpt.cli import main


def moods_data(tmp_path):
    rng = np.random.default_rng(0)
    words = {"happy": "great fun lovely", "sad": "awful dull boring"}
    records = [(label, " ".join(rng.choice(words[label].split(), 3))) for label in rng.choice(["happy", "sad"], 60)]
    path = tmp_path / "moods.tsv"
    path.write_text("".join(f"{label}\t{text}\n" for label, text in records), encoding="utf-8")
    return str(path)


def classify_arguments(tmp_path, *extra):
    return ["finetune", "classify", "--init", "random", "--preset", "tiny", "--emb-dim", "32", "--n-layers", "1",
            "--context-length", "16", "--lr", "3e-3", "--epochs", "2", "--eval-every", "3",
            "--data", moods_data(tmp_path), "--out", str(tmp_path / "run"), "--threads", "1", *extra]


def test_classify_with_lora_trains_only_the_adapters_and_saves_a_plain_model(tmp_path, capsys):
    assert main(classify_arguments(tmp_path, "--lora", "4", "--lora-alpha", "8")) == 0
    printed = capsys.readouterr().out
    # tiny preset at 32 wide, 1 block, 2 classes: 6 wrapped Linears in the block + the head, rank 4.
    expected = 4 * (3 * (32 + 32) + (32 + 32) + (32 + 128) + (128 + 32)) + 4 * (32 + 2)
    assert f"{expected:,} trainable (LoRA rank 4)" in printed and "Test accuracy:" in printed
    out = str(tmp_path / "run")
    with safe_open(os.path.join(out, "checkpoint.safetensors"), framework="np") as file:
        keys = set(file.keys())
        classifier = json.loads(file.metadata()["minigpt"])["classifier"]
    assert "model.out_head.weight" in keys and not any("lora" in key for key in keys)
    assert classifier["trainable"] == "LoRA rank 4"
    assert main(["classify", "--checkpoint", out, "great fun lovely"]) == 0


@pytest.mark.parametrize("flags, message", [
    (["--lora", "0"], "--lora must be a rank >= 1"),
    (["--lora-alpha", "4"], "give --lora RANK with it"),
])
def test_lora_flag_errors(tmp_path, flags, message):
    with pytest.raises(SystemExit, match=message):
        main(classify_arguments(tmp_path, *flags))


def test_instruct_with_lora_trains_only_the_adapters_and_saves_a_plain_untied_model(tmp_path, capsys):
    from minigpt.checkpoint import load_checkpoint
    from minigpt.model import GPTModel, get_config

    base, out = tmp_path / "base", tmp_path / "instruct"
    assert main(["train", "--max-steps", "1", "--out", str(base), "--preset", "tiny", "--batch-size", "2",
                 "--eval-batches", "1", "--sample-tokens", "2", "--threads", "1"]) == 0
    assert main(["finetune", "instruct", "--checkpoint", str(base), "--out", str(out), "--lr", "1e-2",
                 "--lora", "4", "--lora-alpha", "8", "--max-examples", "8", "--batch-size", "4", "--epochs", "1",
                 "--eval-every", "1", "--eval-batches", "1", "--max-new-tokens", "2", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    # tiny preset (2 blocks, 128 wide, GPT-2 vocabulary): 6 wrapped Linears per block + the vocabulary head, rank 4.
    block = 4 * (3 * (128 + 128) + (128 + 128) + (128 + 512) + (512 + 128))
    assert f"{2 * block + 4 * (128 + 50257):,} trainable (LoRA rank 4)" in printed
    assert "minigpt chat --checkpoint" in printed

    base_state, _, base_metadata = load_checkpoint(str(base / "checkpoint.safetensors"))
    state, _, metadata = load_checkpoint(str(out / "checkpoint.safetensors"))
    assert not any("lora" in key for key in state)
    run_info = metadata["trainer"]["run_info"]
    assert run_info["lora"] == {"rank": 4, "alpha": 8.0}
    # The base ties its head to the embedding; the merged head has its own weight, and the config says so.
    assert base_metadata["trainer"]["run_info"]["model_config"]["tie_weights"] is True
    assert run_info["model_config"]["tie_weights"] is False
    np.testing.assert_array_equal(state["tok_emb.weight"], base_state["tok_emb.weight"])  # frozen, not wrapped
    np.testing.assert_array_equal(state["final_norm.scale"], base_state["final_norm.scale"])
    assert not np.array_equal(state["out_head.weight"], base_state["tok_emb.weight"])  # W + (alpha / rank) A B
    assert not np.array_equal(state["trf_blocks.0.ff.layers.0.weight"], base_state["trf_blocks.0.ff.layers.0.weight"])
    model = GPTModel(get_config(run_info["model_config"]), rng=0)
    model.load_state_dict(state)  # what `minigpt chat` does
    assert model.out_head.weight is not model.tok_emb.weight
