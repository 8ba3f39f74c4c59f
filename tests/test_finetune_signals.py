"""Ctrl-C and SIGTERM during `minigpt finetune classify`, `instruct` and `dpo` (real signals).

Each command runs through tests/support/signal_driver.py, which writes "@update" when AdamW's update starts
and then waits there (MINIGPT_TEST_UPDATE_LINGER): a signal sent on that marker arrives inside the
update. The update must finish, the weights of that step must be saved in --out (a checkpoint
that loads, checksums verified, and that `minigpt classify` / `minigpt chat` can use), no later
step may start, and the message must say which step was saved, where, and that the run does not
resume; the exit status is 128 + the signal's number.
"""

import json
import os
import signal

import pytest

from minigpt.checkpoint import CHECKPOINT_NAME, load_checkpoint
from minigpt.cli import main
from support.signal_run import Run

LINGER = 0.5  # seconds inside each update (and each save) for the signal to arrive there


def stop_inside_update(arguments, tmp_path, number, update: int, second_press_in_save: bool = False):
    """Run a finetune command, send `number` inside its `update`-th parameter update; (status, output)."""
    run = Run(arguments, tmp_path, update_linger=LINGER, save_linger=LINGER, command=("finetune",))
    try:
        assert run.wait_for("@update", update, timeout=120), "".join(run.output)
        run.send(number)
        if second_press_in_save:
            assert run.wait_for("@save", timeout=60), "".join(run.output)
            run.send(signal.SIGINT)
        return run.finish(timeout=120)
    finally:
        if run.process.poll() is None:
            run.process.kill()


def check_stop(status, output, number, step, out):
    """The message, the exit status and the checkpoint agree: the weights of `step` are in `out`."""
    assert "Traceback" not in output, output
    assert status == 128 + number, output
    assert output.count("@update") == step, output  # no step after the stopped one started
    name = "Ctrl-C (SIGINT)" if number == signal.SIGINT else "SIGTERM"
    assert f"{name}: stopped after step {step} of " in output, output
    assert f"are saved in {os.path.join(out, CHECKPOINT_NAME)}" in output and "starts over" in output, output
    return load_checkpoint(os.path.join(out, CHECKPOINT_NAME))  # checksums verified


def test_ctrl_c_in_finetune_classify_saves_the_weights_of_the_step(tmp_path, capsys):
    words = {"happy": "great fun lovely", "sad": "awful dull boring"}
    lines = [f"{label}\t{' '.join(words[label].split()[:(index % 3) + 1])}\n"
             for index, label in enumerate(["happy", "sad"] * 20)]
    (tmp_path / "moods.tsv").write_text("".join(lines), encoding="utf-8")
    out = str(tmp_path / "run")
    arguments = ["classify", "--init", "random", "--preset", "tiny", "--emb-dim", "32", "--n-layers", "1",
                 "--context-length", "16", "--trainable", "all", "--epochs", "3", "--batch-size", "4",
                 "--eval-every", "100", "--eval-batches", "1", "--data", str(tmp_path / "moods.tsv"), "--out", out,
                 "--threads", "1"]
    status, output = stop_inside_update(arguments, tmp_path, signal.SIGINT, update=2, second_press_in_save=True)
    _, _, metadata = check_stop(status, output, signal.SIGINT, 2, out)
    assert "saving checkpoint... press Ctrl-C again to abandon it" in output, output  # the second press waited
    assert metadata["classifier"]["interrupted_after_step"] == 2
    assert main(["classify", "--checkpoint", out, "great fun"]) == 0  # usable as the message says
    assert capsys.readouterr().out.split()[0] in ("happy", "sad")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny GPT pretrained for one step by `minigpt train` (GPT-2's tokenizer)."""
    out = tmp_path_factory.mktemp("base")
    assert main(["train", "--max-steps", "1", "--out", str(out), "--preset", "tiny", "--batch-size", "2",
                 "--eval-batches", "1", "--sample-tokens", "2", "--threads", "1"]) == 0
    return str(out)


QUICK = ["--max-examples", "8", "--batch-size", "4", "--epochs", "2", "--eval-every", "100", "--eval-batches", "1",
         "--max-new-tokens", "2", "--threads", "1"]


def test_sigterm_in_finetune_instruct_saves_the_weights_of_the_step(base, tmp_path):
    out = str(tmp_path / "assistant")
    status, output = stop_inside_update(["instruct", "--checkpoint", base, "--out", out, *QUICK], tmp_path,
                                        signal.SIGTERM, update=1)
    _, _, metadata = check_stop(status, output, signal.SIGTERM, 1, out)
    assert metadata["trainer"]["step"] == 1
    assert "stopped after step 1 of 4" in output and f"minigpt chat --checkpoint {out}" in output
    from minigpt.cli.common import load_run_checkpoint

    load_run_checkpoint("chat", "--checkpoint", out)  # what `minigpt chat` reads


def test_ctrl_c_in_finetune_dpo_saves_the_weights_of_the_step(base, tmp_path):
    out = str(tmp_path / "dpo")
    status, output = stop_inside_update(["dpo", "--checkpoint", base, "--out", out, *QUICK], tmp_path,
                                        signal.SIGINT, update=1)
    model_state, _, metadata = check_stop(status, output, signal.SIGINT, 1, out)
    assert metadata["dpo"]["interrupted_after_step"] == 1 and "trainer" in metadata  # `generate --checkpoint` reads it
    before, _, _ = load_checkpoint(os.path.join(base, CHECKPOINT_NAME))
    assert any((model_state[name] != array).any() for name, array in before.items())  # one step was taken
    assert json.dumps(metadata["dpo"])  # plain settings
