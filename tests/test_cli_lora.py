"""`--lora RANK [--lora-alpha A]` of `minigpt finetune classify`: only the LoRA matrices train, the
saved checkpoint is a plain (merged) classifier that `minigpt classify` loads, and bad flags fail."""

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
