"""A training run is never lost (issue 11): full or read-only disks, damaged checkpoints, moved
data, `prepare` and its input, interrupts before training, and the command line's messages.

Real signals sent to a real process are in tests/test_signals.py. Disks are made full or
read-only by a fake OSError from the safetensors writer (root ignores chmod, and CI cannot
mount a small tmpfs).
"""

import errno
import json
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest

from minigpt import checkpoint
from minigpt.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from minigpt.cli import bundled_corpus_path, main

CHAR = ["--preset", "char", "--tokenizer", "char", "--context-length", "16", "--batch-size", "2", "--eval-every", "2",
        "--eval-batches", "1", "--sample-tokens", "2", "--drop-rate", "0.1", "--warmup-steps", "1", "--threads", "1"]


def step_of(folder) -> int:
    return load_checkpoint(os.path.join(folder, CHECKPOINT_NAME))[2]["trainer"]["step"]


def weights_of(folder) -> dict:
    return load_checkpoint(os.path.join(folder, CHECKPOINT_NAME))[0]


@pytest.fixture
def story(tmp_path):
    path = tmp_path / "story.txt"
    shutil.copy(bundled_corpus_path("the-verdict.txt"), path)
    return path


# ---- full or read-only disks ------------------------------------------------------------------

def failing_writes(monkeypatch, folder, after: int, error_number: int):
    """Make checkpoint writes into `folder` fail with `error_number` after `after` good ones,
    with half a file written first, as a disk that fills up does."""
    real_save_file = checkpoint.save_file
    writes = []

    def save_file(tensors, filename, metadata=None):
        if os.path.dirname(os.path.abspath(filename)) == os.path.abspath(folder):
            writes.append(filename)
            if len(writes) > after:
                with open(filename, "wb") as file:
                    file.write(b"\x00" * 1000)
                raise OSError(error_number, os.strerror(error_number), filename)
        return real_save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", save_file)


@pytest.mark.parametrize("error_number", [errno.ENOSPC, errno.EROFS])
def test_a_full_or_read_only_disk_keeps_the_last_checkpoint_and_rescues_the_weights(tmp_path, monkeypatch, story, error_number):
    out, whole, rescue_root = tmp_path / "run", tmp_path / "whole", tmp_path / "rescue"
    monkeypatch.setenv("MINIGPT_RESCUE_DIR", str(rescue_root))
    flags = [*CHAR, "--data", str(story), "--max-steps", "4"]
    main(["train", "--out", str(whole), *flags])
    failing_writes(monkeypatch, out, after=1, error_number=error_number)
    with pytest.raises(SystemExit) as stop:
        main(["train", "--out", str(out), *flags, "--checkpoint-every", "2"])
    message = str(stop.value)
    # The folder, the reason, the bytes needed, the checkpoint kept, and where the weights went.
    assert f"cannot write a checkpoint in {out}: {os.strerror(error_number)} (it needs " in message
    assert " bytes)" in message and "the checkpoint of step 2 there is intact" in message
    assert step_of(out) == 2 and sorted(os.listdir(out)) == ["checkpoint.safetensors", "history.json"]
    (rescue,) = rescue_root.iterdir()
    assert f"were saved instead in {rescue}" in message and step_of(rescue) == 4
    monkeypatch.undo()
    # The rescued run continues into its own folder once there is room, and is the same run.
    assert main(["train", "--resume", str(rescue), "--out", str(out)]) == 0
    assert step_of(out) == 4
    for name, array in weights_of(whole).items():
        assert np.array_equal(weights_of(out)[name], array), name


def test_when_no_folder_can_take_the_checkpoint_the_message_says_so(tmp_path, monkeypatch, story):
    out = tmp_path / "run"
    monkeypatch.setenv("MINIGPT_RESCUE_DIR", str(tmp_path / "rescue"))
    real_save_file = checkpoint.save_file

    def no_space_anywhere(tensors, filename, metadata=None):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    monkeypatch.setattr(checkpoint, "save_file", no_space_anywhere)
    with pytest.raises(SystemExit, match=r"no earlier checkpoint of this run is there\. The weights of step 2 could not "
                                         r"be saved elsewhere either .*No space left.*MINIGPT_RESCUE_DIR"):
        main(["train", "--out", str(out), *CHAR, "--data", str(story), "--max-steps", "2"])
    assert real_save_file is not no_space_anywhere and not os.path.exists(out / CHECKPOINT_NAME)


# ---- damaged checkpoints ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    """A 2-step `minigpt train` run of a character model on the start of the story."""
    out = tmp_path_factory.mktemp("small")
    data = out / "story.txt"
    data.write_text(open(bundled_corpus_path("the-verdict.txt"), encoding="utf-8").read()[:3000])
    main(["train", "--out", str(out), *CHAR, "--data", str(data), "--max-steps", "2"])
    return out / CHECKPOINT_NAME


def test_a_flipped_bit_anywhere_in_a_checkpoint_is_detected(tmp_path):
    from minigpt.model import GPTModel
    from minigpt.optim import AdamW, flatten_state_dict

    # A small model and optimizer (the file stays small, so that many flips are cheap to load).
    model = GPTModel(dict(vocab_size=11, context_length=4, emb_dim=8, n_heads=2, n_layers=1, drop_rate=0.0, qkv_bias=False), rng=0)
    optimizer = AdamW(model.parameters(), lr=0.1)
    for parameter in model.parameters():
        parameter.grad = np.ones_like(parameter.data)
    optimizer.step()
    path = tmp_path / "original.safetensors"
    save_checkpoint(str(path), model.state_dict(), flatten_state_dict(optimizer.state_dict()),
                    {"trainer": {"step": 7, "history": {"train_loss": [3.25, 2.5]}}})
    original = path.read_bytes()
    header_end = 8 + int.from_bytes(original[:8], "little")
    rng = random.Random(0)
    # The header (its length, tensor names, dtypes, shapes, offsets; the metadata and checksums
    # JSON) and the tensor data, one random bit flipped at a time: every one of the first 200
    # bytes, then 300 random bytes of the rest of the header and 200 of the data.
    positions = [*range(200), *rng.sample(range(200, header_end), 300), *rng.sample(range(header_end, len(original)), 200)]
    damaged = tmp_path / CHECKPOINT_NAME
    for position in positions:
        data = bytearray(original)
        data[position] ^= 1 << rng.randrange(8)
        damaged.write_bytes(bytes(data))
        with pytest.raises(ValueError, match="damaged|not a safetensors file|not valid JSON|format|not a checkpoint|not a minigpt"):
            load_checkpoint(str(damaged))


def test_a_damaged_optimizer_state_stops_a_resume_with_a_clear_error(small_checkpoint, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(small_checkpoint.parent, run)
    path = run / CHECKPOINT_NAME
    arrays = load_checkpoint(str(path))[1][0]
    key = next(name for name, array in arrays.items() if array.size > 100)  # e.g. AdamW's moments
    data = bytearray(path.read_bytes())
    # Find that tensor's bytes through the header and flip one bit in the middle.
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_length])
    begin, end = header[f"optimizer.{key}"]["data_offsets"]
    data[8 + header_length + (begin + end) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(SystemExit, match=rf"--resume .*is damaged: tensor 'optimizer.{key}' does not match the checksum"):
        main(["train", "--resume", str(run), "--max-steps", "3"])


def test_checkpoints_of_format_1_without_checksums_still_load(tmp_path):
    path = str(tmp_path / "old.safetensors")
    checkpoint.save_file({"model.w": np.ones(3, np.float32)}, path, metadata={"minigpt": json.dumps({"format_version": 1, "step": 5})})
    assert load_checkpoint(path)[2]["step"] == 5
    save_checkpoint(path, {"w": np.ones(3, np.float32)}, None, {"step": 6})
    assert load_checkpoint(path, verify=False)[2]["step"] == 6


# ---- moved or changed data ----------------------------------------------------------------------

def test_resume_accepts_moved_data_with_the_same_contents_and_refuses_changed_contents(tmp_path, story, capsys):
    out = str(tmp_path / "run")
    main(["train", "--out", out, *CHAR, "--data", str(story), "--max-steps", "2"])
    moved = tmp_path / "elsewhere" / "renamed.txt"
    moved.parent.mkdir()
    shutil.move(story, moved)
    with pytest.raises(SystemExit, match=r"data file .*story.txt' is missing; if it moved, give its new path: --resume DIR --data NEW_PATH"):
        main(["train", "--resume", out, "--max-steps", "3"])
    assert main(["train", "--resume", out, "--data", str(moved), "--max-steps", "3"]) == 0
    assert f"the run's data moved: {story} -> {moved} (same contents" in capsys.readouterr().out
    assert load_checkpoint(os.path.join(out, CHECKPOINT_NAME))[2]["trainer"]["run_info"]["data"] == str(moved)
    # Same length, same characters, same token count: two characters swapped.
    text = moved.read_text()
    changed = tmp_path / "changed.txt"
    changed.write_text(text[:100] + text[101] + text[100] + text[102:])
    assert len(changed.read_text()) == len(text) and changed.read_text() != text
    with pytest.raises(SystemExit, match=r"is not the run's data: its contents changed since the run started"):
        main(["train", "--resume", out, "--data", str(changed), "--max-steps", "4"])
    assert step_of(out) == 3


# ---- prepare and its input -----------------------------------------------------------------------

@pytest.mark.parametrize("link", ["symlink", "hardlink"])
@pytest.mark.parametrize("written", ["out.bin", "out.bin.json", "out.bin.tmp", "out.bin.json.tmp"])
def test_prepare_never_writes_over_its_input_under_any_name(tmp_path, monkeypatch, link, written):
    monkeypatch.chdir(tmp_path)
    text = tmp_path / "input.txt"
    text.write_text("hello world\n")
    (os.symlink if link == "symlink" else os.link)(text, tmp_path / written)
    with pytest.raises(SystemExit, match="is the input file .*input.txt under another name"):
        main(["prepare", "input.txt", "out.bin"])
    assert text.read_text() == "hello world\n"


def test_prepare_refuses_an_empty_text_and_names_an_unwritable_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(SystemExit, match="input 'empty.txt' is empty"):
        main(["prepare", "empty.txt", "out.bin"])
    (tmp_path / "text.txt").write_text("hello\n")
    real_open = open

    def read_only_folder(path, mode="r", *args, **kwargs):  # root ignores chmod: fake the refusal
        if "w" in mode and os.path.abspath(path).startswith(str(tmp_path)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", read_only_folder)
    with pytest.raises(SystemExit) as stop:
        main(["prepare", "text.txt", "out.bin"])
    assert str(stop.value) == f"minigpt prepare: error: cannot write 'out.bin' in the folder {tmp_path}: Permission denied"


def test_a_damaged_sidecar_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.txt").write_text("hello world\n" * 50)
    main(["prepare", "text.txt", "tokens.bin"])
    (tmp_path / "tokens.bin.json").write_text("{not json")
    with pytest.raises(SystemExit, match=r"--data 'tokens.bin': .*the sidecar tokens.bin.json of the token file is not valid JSON"):
        main(["train", "--data", "tokens.bin", "--max-steps", "2"])


# ---- interrupts outside training -----------------------------------------------------------------

@pytest.mark.parametrize("where", ["minigpt.model.GPTModel.__init__", "minigpt.trainer.load_checkpoint"])
def test_ctrl_c_while_the_model_is_built_or_loaded_is_one_line(tmp_path, monkeypatch, capsys, story, where):
    out = str(tmp_path / "run")
    main(["train", "--out", out, *CHAR, "--data", str(story), "--max-steps", "2"])
    before = open(os.path.join(out, CHECKPOINT_NAME), "rb").read()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(where, interrupted)
    assert main(["train", "--resume", out, "--max-steps", "3"]) == 130
    assert capsys.readouterr().err.strip() == "minigpt train: interrupted before training started; nothing was saved"
    assert open(os.path.join(out, CHECKPOINT_NAME), "rb").read() == before


# ---- messages ------------------------------------------------------------------------------------

def test_plain_minigpt_prints_help_and_version(capsys):
    assert main([]) == 0
    assert "usage: minigpt" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("minigpt 0.")


def test_a_batch_larger_than_the_data_names_the_batch_size(tmp_path, story):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--out", str(tmp_path / "r"), *CHAR, "--data", str(story), "--batch-size", "100000"])
    message = str(stop.value)
    assert message.startswith("minigpt train: error: --batch-size 100000 is larger than the ")
    assert "drop_last" not in message and "or None" not in message


@pytest.mark.parametrize("value, expected", [("500", (500, 0.0)), ("10min", (0, 10.0)), ("500,2.5min", (500, 2.5)), ("off", (0, 0.0))])
def test_checkpoint_every_takes_steps_minutes_or_both(value, expected):
    from minigpt.cli.train import _checkpoint_every

    assert _checkpoint_every(value) == expected


@pytest.mark.parametrize("value", ["0", "-3", "10 minutes", "0min", "abc"])
def test_checkpoint_every_refuses_other_values(value, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--checkpoint-every", value])
    assert "expected steps (e.g. 500), minutes (e.g. 10min)" in capsys.readouterr().err


def test_a_redirected_log_has_no_progress_bar_and_quiet_removes_it(tmp_path, story):
    out = str(tmp_path / "run")
    command = [sys.executable, "-m", "minigpt", "train", "--out", out, *CHAR, "--data", str(story), "--max-steps", "2"]
    log = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "train:" not in log.stderr and "it/s" not in log.stderr and "step      2" in log.stdout
    assert "--quiet" in subprocess.run(command[:4] + ["--help"], capture_output=True, text=True).stdout


def test_quiet_turns_the_progress_bar_off(tmp_path, story, monkeypatch):
    from minigpt import trainer as train

    shown = []

    class Recorded(train.tqdm):
        def __init__(self, *args, **kwargs):
            shown.append(kwargs["disable"])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(train, "tqdm", Recorded)
    main(["train", "--out", str(tmp_path / "a"), *CHAR, "--data", str(story), "--max-steps", "2"])
    main(["train", "--out", str(tmp_path / "b"), *CHAR, "--data", str(story), "--max-steps", "2", "--quiet"])
    assert shown == [None, True]  # None: tqdm hides the bar itself when stderr is not a terminal


# ---- an interrupt between the last update and its evaluation ---------------------------------

def test_a_run_saved_with_its_last_evaluation_due_records_it_on_resume(tmp_path, story):
    """A signal after the last step's update but before its evaluation saves the run with the
    evaluation still due: `--resume` must record it (not say "nothing to train"), so the run's
    history equals the uninterrupted run's. Made deterministic by editing a finished checkpoint
    back into that state."""
    whole, pieces = str(tmp_path / "whole"), str(tmp_path / "pieces")
    assert main(["train", "--data", str(story), *CHAR, "--max-steps", "4", "--out", whole]) == 0
    shutil.copytree(whole, pieces)
    path = os.path.join(pieces, CHECKPOINT_NAME)
    model_state, optimizer_state, metadata = load_checkpoint(path)
    trainer_state = metadata["trainer"]
    assert trainer_state["history"]["step"][-1] == 4
    trainer_state["history"] = {name: values[:-1] for name, values in trainer_state["history"].items()}
    trainer_state["eval_due"] = True
    save_checkpoint(path, model_state, optimizer_state, metadata)

    assert main(["train", "--resume", pieces]) == 0
    resumed = load_checkpoint(path)[2]["trainer"]
    assert resumed["history"] == load_checkpoint(os.path.join(whole, CHECKPOINT_NAME))[2]["trainer"]["history"]
    assert resumed["eval_due"] is False and resumed["step"] == 4
