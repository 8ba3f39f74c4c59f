"""Tests of the `minigpt` command line (minigpt.cli.main): train, resume, generate, prepare, errors.

Every run is a few steps of a small model; the tiny preset keeps GPT-2's 50,257-token head, so
flags shrink the batch, the evaluation and the samples to keep each run around a second.
"""

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from minigpt.checkpoint import CHECKPOINT_NAME, load_checkpoint
from minigpt.cli import bundled_corpus_path, main
from minigpt.trainer import Trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHEAP = ["--batch-size", "2", "--eval-batches", "1", "--sample-tokens", "4"]


def trainer_state(directory) -> dict:
    return load_checkpoint(os.path.join(directory, CHECKPOINT_NAME))[2]["trainer"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 3-step run of the default preset on the bundled text, and what it printed."""
    out = str(tmp_path_factory.mktemp("tiny"))
    printed = io.StringIO()  # (a module-scoped fixture cannot use capsys)
    with contextlib.redirect_stdout(printed):
        status = main(["train", "--max-steps", "3", "--out", out, "--preset", "tiny", "--eval-every", "1", "--context-length", "32", *CHEAP])
    assert status == 0
    return out, printed.getvalue()


def test_train_writes_a_checkpoint_and_prints_its_config_and_seed(tiny_run):
    out, printed = tiny_run
    assert os.path.isfile(os.path.join(out, CHECKPOINT_NAME)) and os.path.isfile(os.path.join(out, "history.json"))
    state = trainer_state(out)
    assert state["step"] == 3 and state["history"]["step"] == [1, 2, 3]
    assert state["run_info"]["tokenizer"] == {"name": "gpt2"}
    assert state["run_info"]["model_config"]["context_length"] == 32
    assert state["run_info"]["data"] == os.path.abspath(bundled_corpus_path("the-verdict.txt"))
    lines = printed.splitlines()
    assert lines[0].startswith("model: {") and '"context_length": 32' in lines[0]
    assert any(line.startswith("training: {") and '"max_steps": 3' in line for line in lines)
    assert any(line.startswith("seed: 123 | steps: 3") for line in lines)
    assert "sample @ step 3: 'Every effort moves you" in printed


def test_resume_continues_to_the_new_max_steps(tiny_run, tmp_path):
    out, _ = tiny_run
    resumed = str(tmp_path / "resumed")
    shutil.copytree(out, resumed)
    assert main(["train", "--resume", resumed, "--max-steps", "5"]) == 0
    state = trainer_state(resumed)
    assert state["step"] == 5 and state["history"]["step"] == [1, 2, 3, 4, 5]
    assert state["tokens_seen"] == 5 * 2 * 32


def test_ctrl_c_then_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch, capsys):
    # Character-level model on the short story (cheap), with dropout and a cosine schedule: a run
    # stopped by Ctrl-C in step 4 and resumed with --resume gives the weights of a run in one go.
    flags = ["--preset", "char", "--tokenizer", "char", "--data", "the-verdict.txt", "--max-steps", "6", "--warmup-steps", "2",
             "--drop-rate", "0.1", "--context-length", "16", "--eval-every", "2", *CHEAP]
    whole, split = str(tmp_path / "whole"), str(tmp_path / "split")
    main(["train", "--out", whole, *flags])
    train_step = Trainer.train_step
    calls = []

    def interrupted_train_step(self):
        calls.append(self.step)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return train_step(self)

    monkeypatch.setattr(Trainer, "train_step", interrupted_train_step)
    assert main(["train", "--out", split, *flags]) == 130  # the shell's status for Ctrl-C
    monkeypatch.undo()
    assert trainer_state(split)["step"] == 3
    assert "continue with --resume" in capsys.readouterr().out
    main(["train", "--resume", split])
    whole_weights, whole_state = load_checkpoint(os.path.join(whole, CHECKPOINT_NAME))[0::2]
    split_weights, split_state = load_checkpoint(os.path.join(split, CHECKPOINT_NAME))[0::2]
    for name, array in whole_weights.items():
        assert np.array_equal(split_weights[name], array), name
    assert split_state["trainer"]["history"] == whole_state["trainer"]["history"]


def test_generate_prints_a_continuation(tiny_run, capsys):
    out, _ = tiny_run
    assert main(["generate", "--checkpoint", out, "--prompt", "Every effort", "--max-new-tokens", "5"]) == 0
    greedy = capsys.readouterr().out
    assert greedy.startswith("Every effort") and len(greedy.strip()) > len("Every effort")
    arguments = ["generate", "--checkpoint", os.path.join(out, CHECKPOINT_NAME), "--prompt", "Every effort",
                 "--max-new-tokens", "5", "--temperature", "1.0", "--top-k", "50", "--top-p", "0.9", "--seed", "4"]
    main(arguments)
    first = capsys.readouterr().out
    main(arguments)
    assert capsys.readouterr().out == first and first.startswith("Every effort")


def test_character_level_shakespeare(tmp_path, capsys):
    out = str(tmp_path / "char")
    main(["train", "--preset", "char", "--tokenizer", "char", "--data", "tinyshakespeare.txt", "--max-steps", "3",
          "--out", out, "--context-length", "16", "--batch-size", "2", "--eval-batches", "2", "--sample-tokens", "8"])
    assert "warming up for 0 steps" in capsys.readouterr().out  # the recipe's 100 do not fit in 3
    state = trainer_state(out)
    assert state["step"] == 3
    assert state["run_info"]["tokenizer"]["name"] == "char" and len(state["run_info"]["tokenizer"]["characters"]) == 65
    assert state["run_info"]["model_config"]["vocab_size"] == 65
    assert state["training_config"]["schedule"] == "cosine"
    capsys.readouterr()
    main(["generate", "--checkpoint", out, "--prompt", "ROMEO:", "--max-new-tokens", "10"])
    text = capsys.readouterr().out
    assert text.startswith("ROMEO:") and len(text.rstrip("\n")) == 16


def test_prepare_then_train_on_the_token_file(tmp_path):
    source = tmp_path / "story.txt"
    shutil.copy(bundled_corpus_path("the-verdict.txt"), source)
    tokens = str(tmp_path / "story.bin")
    assert main(["prepare", str(source), tokens]) == 0
    assert os.path.isfile(tokens) and os.path.isfile(tokens + ".json")
    assert os.path.getsize(tokens) == 2 * 5145  # uint16 ids of the story's 5,145 GPT-2 tokens
    out = str(tmp_path / "run")
    main(["train", "--data", tokens, "--max-steps", "2", "--out", out, "--context-length", "8", "--batch-size", "1",
          "--eval-batches", "1", "--sample-tokens", "0"])
    state = trainer_state(out)
    assert state["step"] == 2 and state["run_info"]["data"] == os.path.abspath(tokens)


@pytest.mark.parametrize("arguments, message", [
    (["train", "--preset", "gpt5"], "--preset 'gpt5': unknown preset; choose one of .*tiny"),
    (["train", "--data", "no-such-file.txt"], "--data 'no-such-file.txt': no such file"),
    (["train", "--resume", "no-such-dir"], "--resume 'no-such-dir': no checkpoint there"),
    (["train", "--max-steps", "0"], r"max_steps must be >= 1, got 0 \(flag --max-steps\)$"),  # no "or None": not a flag value
    (["train", "--preset", "char", "--max-steps", "5", "--warmup-steps", "5"], "warmup_steps=5 must be smaller"),
    (["train", "--context-length", "4000", "--max-steps", "1"], "validation split.*tokens short"),
    (["generate", "--checkpoint", "no-such-dir"], "--checkpoint 'no-such-dir': no checkpoint there"),
    (["prepare", "no-such-file.txt", "out.bin"], "input 'no-such-file.txt': no such file"),
    (["prepare", "in.txt", "out.txt"], "use a .bin file name"),
])
def test_bad_flags_give_clear_errors(arguments, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as error:
        main(arguments)
    assert error.value.code != 0
    assert str(error.value).startswith(f"minigpt {arguments[0]}: error: ")
    assert re.search(message, str(error.value)), str(error.value)


def test_generate_errors_name_the_flag(tiny_run):
    out, _ = tiny_run
    for flags, name in [(["--top-k", "0"], "--top-k must be an integer >= 1, got 0"),
                        (["--temperature", "-1"], "--temperature must be"),
                        (["--top-p", "2"], "--top-p must be a number in"),
                        (["--max-new-tokens", "-2"], "--max-new-tokens must be"),
                        (["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
                        (["--prompt", ""], "--prompt is empty")]:
        with pytest.raises(SystemExit) as error:
            main(["generate", "--checkpoint", out, *flags])
        assert str(error.value).startswith("minigpt generate: error: " + name), str(error.value)
        assert "None" not in str(error.value)


def test_generate_notes_a_prompt_longer_than_the_context(tiny_run, capsys):
    out, _ = tiny_run  # context 32 tokens
    prompt = "Every effort moves you " * 20
    assert main(["generate", "--checkpoint", out, "--prompt", prompt, "--max-new-tokens", "3"]) == 0
    captured = capsys.readouterr()
    assert "more than the model's context of 32: the model sees only its last 32 tokens" in captured.err
    assert captured.out.startswith(prompt)


def test_generate_streams_the_same_text_with_and_without_the_cache(tiny_run, capsys, monkeypatch):
    out, _ = tiny_run
    flushed = []
    real_print = print

    def recording_print(*values, **options):  # each piece is printed and flushed as it comes
        flushed.append((values, options.get("flush", False)))
        real_print(*values, **options)

    monkeypatch.setattr("builtins.print", recording_print)
    arguments = ["generate", "--checkpoint", out, "--prompt", "Every effort", "--max-new-tokens", "8"]
    main(arguments)
    cached = capsys.readouterr().out
    pieces = [values for values, flush in flushed if flush]
    assert len(pieces) >= 2  # the prompt, then the new text piece by piece
    main(arguments + ["--no-cache"])
    assert capsys.readouterr().out == cached


def test_generate_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 50)", "(default: 0.0)", "(default: 123)", "(default: Every effort moves you)"):
        assert default in text
    assert "None" not in text


def test_generate_from_a_non_minigpt_file(tmp_path):
    from safetensors.numpy import save_file

    path = str(tmp_path / "model.safetensors")
    save_file({"w": np.zeros(2, np.float32)}, path)
    with pytest.raises(SystemExit, match="not a minigpt checkpoint"):
        main(["generate", "--checkpoint", path])


def test_argparse_rejects_unknown_choices(capsys):
    with pytest.raises(SystemExit) as error:
        main(["train", "--tokenizer", "bytes"])
    assert error.value.code == 2 and "invalid choice: 'bytes'" in capsys.readouterr().err


def test_python_dash_m_minigpt_help():
    environment = {**os.environ, "PYTHONPATH": ROOT}
    result = subprocess.run([sys.executable, "-m", "minigpt", "--help"], capture_output=True, text=True, env=environment, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    for command in ("train", "generate", "prepare", "finetune"):
        assert command in result.stdout
    result = subprocess.run([sys.executable, "-m", "minigpt", "train", "--help"], capture_output=True, text=True, env=environment, cwd=ROOT)
    assert result.returncode == 0 and "--grad-accum-steps" in result.stdout and "--resume" in result.stdout


# ---- checks made before any training (from a fresh user's review) ----------------------------


def test_an_existing_run_is_not_overwritten_without_asking(tiny_run, tmp_path):
    out, _ = tiny_run
    before = open(os.path.join(out, CHECKPOINT_NAME), "rb").read()
    with pytest.raises(SystemExit, match=r"already holds a run .*--resume .*--overwrite"):
        main(["train", "--max-steps", "1", "--out", out, "--context-length", "32", *CHEAP])
    assert open(os.path.join(out, CHECKPOINT_NAME), "rb").read() == before
    copy = str(tmp_path / "copy")
    shutil.copytree(out, copy)
    assert main(["train", "--max-steps", "1", "--out", copy, "--context-length", "32", "--overwrite", *CHEAP]) == 0


def test_unwritable_out_and_bad_sample_prompt_fail_before_training(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(SystemExit, match="--out .* is a file; give a folder"):
        main(["train", "--max-steps", "1", "--out", str(blocker), *CHEAP])
    with pytest.raises(SystemExit, match="--sample-prompt is empty"):
        main(["train", "--max-steps", "1", "--out", str(tmp_path / "r1"), "--sample-prompt", "", *CHEAP])
    with pytest.raises(SystemExit, match="--sample-prompt: character '😀'"):
        main(["train", "--preset", "char", "--max-steps", "1", "--out", str(tmp_path / "r2"), "--sample-prompt", "Hi 😀"])
    assert "train loss" not in capsys.readouterr().out  # nothing was trained


def test_data_files_that_cannot_be_read_are_named(tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café au lait ".encode("latin-1") * 200)
    with pytest.raises(SystemExit, match="is not UTF-8 text"):
        main(["train", "--data", str(latin1), "--out", str(tmp_path / "r")])
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(SystemExit, match="is empty"):
        main(["train", "--data", str(empty), "--tokenizer", "char", "--out", str(tmp_path / "r")])
    with pytest.raises(SystemExit, match="is a directory"):
        main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "r")])


def test_crlf_text_gives_the_same_tokens_as_its_prepared_file(tmp_path, capsys):
    crlf = tmp_path / "crlf.txt"
    crlf.write_bytes(open(bundled_corpus_path("the-verdict.txt"), "rb").read().replace(b"\n", b"\r\n"))
    main(["prepare", str(crlf), str(tmp_path / "crlf.bin")])
    capsys.readouterr()
    counts = []
    for data in (crlf, tmp_path / "crlf.bin"):
        out = str(tmp_path / data.name.replace(".", "-"))
        main(["train", "--data", str(data), "--max-steps", "1", "--out", out, "--context-length", "32", *CHEAP])
        counts.append(re.search(r"([\d,]+) tokens", capsys.readouterr().out).group(1))
    assert counts[0] == counts[1]


def test_prepare_refuses_to_overwrite_its_input_or_write_into_a_missing_folder(tmp_path):
    text = tmp_path / "text.bin"
    text.write_text("hello world " * 100)
    with pytest.raises(SystemExit, match="is the input file"):
        main(["prepare", str(text), str(text)])
    assert text.read_text().startswith("hello world")
    with pytest.raises(SystemExit, match="does not exist"):
        main(["prepare", str(text), str(tmp_path / "missing" / "out.bin")])


def test_resume_refuses_changed_data_and_does_nothing_past_its_target(tmp_path, capsys):
    data = tmp_path / "story.txt"
    data.write_text(open(bundled_corpus_path("the-verdict.txt"), encoding="utf-8").read())
    out = str(tmp_path / "run")
    main(["train", "--data", str(data), "--max-steps", "2", "--out", out, "--context-length", "32", *CHEAP])
    assert main(["train", "--resume", out, "--max-steps", "1"]) == 0
    assert "nothing to train" in capsys.readouterr().out
    data.write_text(data.read_text()[:-2000])
    with pytest.raises(SystemExit, match="contents changed since the run started.*cannot continue exactly"):
        main(["train", "--resume", out, "--max-steps", "4"])


def test_resume_with_max_steps_below_the_step_or_within_the_warmup_says_so(tmp_path, capsys):
    # A run with a 4-step warmup stopped at step 6 (as `--max-steps 6`); --max-steps 3 once said
    # "warmup_steps=4 must be smaller than the run's 3 steps (flag --warmup-steps / --max-steps)",
    # a flag a resumed run ignores, and --max-steps 5 "already at step 6 of 5".
    out = str(tmp_path / "run")
    main(["train", "--data", "the-verdict.txt", "--max-steps", "6", "--schedule", "cosine", "--warmup-steps", "4",
          "--out", out, "--context-length", "32", *CHEAP])
    capsys.readouterr()
    for max_steps in ("3", "5"):
        assert main(["train", "--resume", out, "--max-steps", max_steps]) == 0
        assert f"already at step 6, past --max-steps {max_steps}: nothing to train" in capsys.readouterr().out
    state = trainer_state(out)
    state["step"] = 2  # as if stopped within the warmup: a target inside it cannot be trained to
    with pytest.raises(SystemExit, match=r"--max-steps 3 ends the run within its 4 warmup steps.*above 4"):
        from minigpt.cli.train import _check_resumed_max_steps
        _check_resumed_max_steps(3, state["step"], state["training_config"])


@pytest.mark.parametrize("flags, message", [
    (["--schedule", "cosine", "--min-lr", "1", "--max-steps", "12"], "--min-lr 1.0 is above --lr"),
    (["--stride", "0"], "--stride must be at least 1"),
    (["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    (["--schedule", "cosine", "--min-lr", "-1"], r"min_lr must be a finite number >= 0, got -1.0 \(flag --min-lr\)"),
    (["--lr", "inf"], r"lr must be a finite number > 0, got inf \(flag --lr\)"),
    (["--threads", "0"], "--threads must be between 1 and the .* CPUs this process may use, got 0"),
    (["--threads", "100000"], "--threads must be between 1 and the .* CPUs this process may use, got 100000"),
    (["--schedule", "cosine", "--warmup-steps", "5", "--max-steps", "2"],
     r"warmup_steps=5 must be smaller .* \(flag --warmup-steps / --max-steps\)"),
    (["--drop-rate", "2"], r"drop_rate must be a probability in \[0, 1\), got 2.0 \(flag --drop-rate\)"),
    (["--batch-size", "0"], r"\(flag --batch-size\)"),
    (["--context-length", "5000"], r"max_length \+ 1 = 5001: .* short \(flag --train-ratio / --context-length\)"),
    (["--min-lr", "1e-5"], "--min-lr applies to --schedule cosine only; the schedule is 'constant'"),
    (["--schedule", "constant", "--warmup-steps", "5"], "--warmup-steps applies to --schedule cosine only"),
])
def test_more_flag_errors(tmp_path, flags, message):
    with pytest.raises(SystemExit, match=message):
        main(["train", "--out", str(tmp_path / "r"), *flags])


def test_threads_sets_the_engine_and_blas_threads(tmp_path):
    from threadpoolctl import threadpool_info, threadpool_limits

    from autograd import parallel

    before = parallel.get_num_threads()
    with threadpool_limits(limits=None):  # gives the BLAS thread count back afterwards
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                assert main(["train", "--max-steps", "1", "--out", str(tmp_path / "r"), "--threads", "1",
                             "--context-length", "32", *CHEAP]) == 0
            assert parallel.get_num_threads() == 1
            assert all(library["num_threads"] == 1 for library in threadpool_info() if library["user_api"] == "blas")
        finally:
            parallel.set_num_threads(before)


def test_every_commands_negative_seed_is_a_flag_error(tmp_path):
    with pytest.raises(SystemExit, match="minigpt finetune: error: --seed must be an integer >= 0, got -3"):
        main(["finetune", "classify", "--init", "random", "--preset", "tiny", "--seed", "-3", "--out", str(tmp_path / "r")])


def test_resume_uses_the_runs_thread_count_and_accepts_threads(tmp_path, capsys):
    from autograd.parallel import available_cpus, get_num_threads
    from minigpt.cli.common import set_threads

    flags = ["--preset", "tiny", "--context-length", "16", "--eval-every", "2", *CHEAP]
    whole, split = str(tmp_path / "whole"), str(tmp_path / "split")
    try:
        main(["train", "--out", whole, "--max-steps", "4", "--threads", "1", *flags])
        main(["train", "--out", split, "--max-steps", "2", "--threads", "1", *flags])
        assert trainer_state(split)["run_info"]["threads"] == 1
        set_threads("train", available_cpus())  # a new process: every CPU
        capsys.readouterr()
        main(["train", "--resume", split, "--max-steps", "3"])
        printed = capsys.readouterr().out
        if available_cpus() > 1:
            assert "note: using the run's thread count, --threads 1" in printed
        assert get_num_threads() == 1
        set_threads("train", available_cpus())
        main(["train", "--resume", split, "--max-steps", "4", "--threads", "1"])  # accepted, not ignored
        assert "ignoring" not in capsys.readouterr().out
    finally:
        set_threads("train", available_cpus())
    whole_weights = load_checkpoint(os.path.join(whole, CHECKPOINT_NAME))[0]
    split_weights = load_checkpoint(os.path.join(split, CHECKPOINT_NAME))[0]
    for name, array in whole_weights.items():
        assert np.array_equal(split_weights[name], array), name


def test_the_command_ignores_more_signals_once_it_has_finished_and_in_process_callers_keep_theirs():
    # A burst of Ctrl-C presses can outlast the command: one landing while Python shuts down
    # printed a KeyboardInterrupt traceback from tqdm's exit handler. The `minigpt` command
    # (main() on its own command line) ignores SIGINT and SIGTERM once it has returned its status;
    # main(argv) called from Python code leaves the caller's handlers alone.
    code = ("import signal, minigpt.cli as cli; cli._main = lambda argv, started: 130; "
            "own = cli.main(['train']), signal.getsignal(signal.SIGINT) is signal.SIG_IGN; "
            "status = cli.main(); "
            "print(own, status, signal.getsignal(signal.SIGINT) is signal.SIG_IGN, signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)")
    printed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert printed.split() == ["(130,", "False)", "130", "True", "True"]


def test_a_ctrl_c_while_train_sets_up_mpi_says_nothing_was_saved(monkeypatch, tmp_path, capsys):
    # The window between the command starting and its own interrupt handling (importing and
    # initialising minigpt.distributed) once gave only "minigpt train: interrupted", which does not
    # say what was kept (seen in test_signals under CI load).
    import minigpt.distributed

    def interrupted_init(force=False):
        raise KeyboardInterrupt

    monkeypatch.setattr(minigpt.distributed, "init", interrupted_init)
    assert main(["train", "--preset", "char", "--max-steps", "1", "--out", str(tmp_path / "run")]) == 130
    assert "minigpt train: interrupted before training started; nothing was saved" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
