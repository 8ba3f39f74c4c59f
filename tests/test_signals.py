"""Real signals sent to a real `minigpt train` process, at random moments (issue 11).

A run is stopped again and again by Ctrl-C (SIGINT) or SIGTERM, at random times and exactly
inside the parameter update or inside the checkpoint write (tests/support/signal_driver.py marks those
places), with second and third presses; after each stop the run is resumed. Every stop must
leave a checkpoint that loads (checksums verified) and says the step the message says, or a
message that nothing was saved, and the run pieced together must end with the weights,
optimizer state and history of the same run made in one go, bit for bit.
"""

import os
import random
import shutil
import signal
import time

import numpy as np

from minigpt.checkpoint import CHECKPOINT_NAME, load_checkpoint
from support.signal_run import Run

MAX_STEPS = 150
FLAGS = ["--preset", "char", "--tokenizer", "char", "--data", "the-verdict.txt", "--context-length", "16",
         "--batch-size", "2", "--eval-every", "7", "--eval-batches", "1", "--sample-tokens", "2", "--drop-rate", "0.1",
         "--max-steps", str(MAX_STEPS), "--warmup-steps", "5", "--grad-accum-steps", "2", "--threads", "1",
         "--checkpoint-every", "40,5min"]
BUDGET_SECONDS = 30  # interrupted trials start until then; the test stays well under a minute


def saved_step(out):
    path = os.path.join(out, CHECKPOINT_NAME)
    return load_checkpoint(path)[2]["trainer"]["step"] if os.path.exists(path) else None


def interrupt(run, kind, rng):
    """Send the signals of one trial of kind `kind`; return the first signal sent."""
    number = rng.choice([signal.SIGINT, signal.SIGINT, signal.SIGTERM])
    if kind == "random moment":
        time.sleep(rng.uniform(0.0, 2.5))  # from Python's start to deep into training
        run.send(number)
    elif kind.startswith("inside the update"):
        number = signal.SIGTERM if "SIGTERM" in kind else signal.SIGINT
        run.wait_for("@update", rng.randint(1, 20))
        run.send(number)
    elif kind == "again inside the save":  # the save must finish and say so
        run.wait_for("@update", rng.randint(1, 20))
        run.send(signal.SIGINT)
        if run.wait_for("@save"):
            run.send(signal.SIGINT)
        number = signal.SIGINT
    elif kind == "a burst of presses":  # presses within half a second of the warning do not abandon
        run.wait_for("@update", rng.randint(1, 20))
        for _ in range(3):
            run.send(signal.SIGINT)
            time.sleep(0.05)
        number = signal.SIGINT
    elif kind == "three presses abandon the save":
        run.wait_for("@update", rng.randint(1, 20))
        run.send(signal.SIGINT)
        if run.wait_for("@save"):
            run.send(signal.SIGINT)
            time.sleep(0.8)
            run.send(signal.SIGINT)
        number = signal.SIGINT
    return number


def check_outcome(kind, number, status, output, out, step_before):
    """The exit status and the message tell the truth about the checkpoint on disk."""
    assert "Traceback" not in output, output
    step_after = saved_step(out)  # loads the file: checksums verified
    if status == 0:
        assert step_after == MAX_STEPS, output
        return
    if status == -number:
        # Killed by the signal's default action: before Python installs its handler at start-up,
        # or after `minigpt` returned, while the interpreter shuts down (handlers are reset then).
        stated = output.split(": checkpoint of step ")[1].split()[0] if ": checkpoint of step " in output else None
        assert step_after in (step_before, None if stated is None else int(stated)), (kind, output)
        return
    assert status == 128 + number, (kind, status, output)
    if "save abandoned" in output:  # the checkpoint kept: the one before, or a periodic one of this run
        message = output[output.index("save abandoned"):]
        if "nothing was saved" in message:
            assert step_after is None, output
        else:
            assert int(message.split("checkpoint of step ")[1].split()[0]) == step_after, output
    elif "nothing was saved" in output:
        assert step_after == step_before, output
    else:
        stated = int(output.split(": checkpoint of step ")[1].split()[0])
        assert stated == step_after, output
    if kind == "again inside the save" and "@save" in output:
        assert "saving checkpoint... press Ctrl-C again to abandon it" in output and "save abandoned" not in output, output
    if kind == "a burst of presses":
        assert "save abandoned" not in output, output


def assert_same_run(whole, pieces):
    """The run pieced together has the weights, optimizer state and history of the run in one go."""
    whole_model, whole_optimizer, whole_metadata = load_checkpoint(os.path.join(whole, CHECKPOINT_NAME))
    model, optimizer, metadata = load_checkpoint(os.path.join(pieces, CHECKPOINT_NAME))
    for name, array in whole_model.items():
        assert np.array_equal(model[name], array), name
    for name, array in whole_optimizer[0].items():
        assert np.array_equal(optimizer[0][name], array), name
    assert metadata["trainer"]["history"] == whole_metadata["trainer"]["history"]
    assert metadata["trainer"]["step"] == MAX_STEPS


def test_any_sequence_of_signals_leaves_a_checkpoint_that_resumes_exactly(tmp_path):
    started = time.monotonic()
    whole, pieces = str(tmp_path / "whole"), str(tmp_path / "pieces")
    reference = Run(["--out", whole, *FLAGS], tmp_path)  # runs alongside the interrupted one
    rng = random.Random(int(os.environ.get("MINIGPT_SIGNAL_SEED", "11")))
    kinds = ["random moment", "inside the update (Ctrl-C)", "again inside the save", "inside the update (SIGTERM)",
             "a burst of presses", "three presses abandon the save"]
    trials, chains = 0, 0
    while time.monotonic() - started < BUDGET_SECONDS or trials < len(kinds):
        kind = kinds[trials % len(kinds)]
        step_before = saved_step(pieces)
        arguments = ["--resume", pieces, "--threads", "1"] if step_before is not None else ["--out", pieces, "--overwrite", *FLAGS]
        run = Run(arguments, tmp_path, save_linger=1.5 if kind == "three presses abandon the save" else 0.05)
        number = interrupt(run, kind, rng)
        status, output = run.finish()
        check_outcome(kind, number, status, output, pieces, step_before)
        trials += 1
        if saved_step(pieces) == MAX_STEPS:  # this chain of runs is complete: compare, then start another
            if reference.process.returncode is None:
                assert reference.finish()[0] == 0
            assert_same_run(whole, pieces)
            shutil.rmtree(pieces)
            chains += 1
    if saved_step(pieces) is not None or chains == 0:  # finish the last chain (from scratch if nothing was saved)
        arguments = ["--resume", pieces, "--threads", "1"] if saved_step(pieces) is not None else ["--out", pieces, "--overwrite", *FLAGS]
        status, output = Run(arguments, tmp_path).finish()
        assert status == 0, output
        if reference.process.returncode is None:
            assert reference.finish()[0] == 0
        assert_same_run(whole, pieces)
        chains += 1
    reference.process.wait(timeout=60)
    assert chains >= 1 and trials >= len(kinds)
    print(f"{trials} interrupted runs in {chains} chain(s), {time.monotonic() - started:.0f} s")  # seen with pytest -s
