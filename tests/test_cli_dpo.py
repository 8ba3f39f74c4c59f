"""`minigpt finetune dpo` end to end on a tiny model: the notebook's report (margins before and
after, evaluation lines, responses of the reference and the policy next to the chosen and rejected
ones), the files it leaves, and its argument errors."""

import json
import os

import numpy as np
import pytest

from minigpt.checkpoint import CHECKPOINT_NAME, load_checkpoint
from minigpt.cli import main

CHEAP = ["--batch-size", "2", "--eval-batches", "1", "--sample-tokens", "4"]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A 1-step `minigpt train` run with a context long enough for the preference prompts."""
    out = str(tmp_path_factory.mktemp("tiny"))
    assert main(["train", "--max-steps", "1", "--out", out, "--preset", "tiny", "--context-length", "160", *CHEAP]) == 0
    return out


def test_dpo_runs_reports_margins_and_saves(tiny_checkpoint, tmp_path, capsys):
    out = str(tmp_path / "dpo")
    status = main(["finetune", "dpo", "--checkpoint", tiny_checkpoint, "--max-examples", "4", "--batch-size", "2",
                   "--eval-every", "1", "--eval-batches", "1", "--max-new-tokens", "2", "--lr", "1e-3", "--out", out])
    assert status == 0
    printed = capsys.readouterr().out
    assert "before: validation loss 0.6931, validation reward margin 0.0000" in printed
    assert "Ep 1 (Step 000000): Train loss" in printed and "Ep 1 (Step 000001)" in printed
    assert "after: validation loss" in printed
    assert printed.count("Chosen response:") == 3 and printed.count("Policy model response:") == 3
    assert "Reference model response:" in printed
    state, _, metadata = load_checkpoint(os.path.join(out, CHECKPOINT_NAME))
    assert metadata["dpo"]["beta"] == 0.1 and "run_info" in metadata["trainer"]
    source, _, _ = load_checkpoint(os.path.join(tiny_checkpoint, CHECKPOINT_NAME))
    assert any(not np.array_equal(state[name], source[name]) for name in source)  # the policy moved
    history = json.load(open(os.path.join(out, "history.json")))
    assert len(history["val_losses"]) == 2 and history["before"]["val_loss"] == pytest.approx(np.log(2), rel=1e-6)
    assert main(["generate", "--checkpoint", out, "--prompt", "Hi", "--max-new-tokens", "2"]) == 0


@pytest.mark.parametrize("flags, message", [
    (["--beta", "0"], "--beta must be > 0"),
    (["--lr", "-1"], "--lr must be > 0"),
    (["--max-examples", "1", "--batch-size", "8"], "need at least --batch-size=8"),
])
def test_dpo_argument_errors(tiny_checkpoint, tmp_path, flags, message):
    with pytest.raises(SystemExit, match=message):
        main(["finetune", "dpo", "--checkpoint", tiny_checkpoint, "--out", str(tmp_path / "x"), *flags])


def test_dpo_needs_a_checkpoint(tmp_path):
    with pytest.raises(SystemExit, match="no checkpoint there"):
        main(["finetune", "dpo", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "x")])
