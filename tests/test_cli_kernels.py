"""`--kernels {reference,fast}`: the engine's switch between its plain reference ops and its fast ones,
on every command that runs a model (train, generate, chat, classify, the finetune tasks).

The flag is parsed once (minigpt/cli/common.py, beside --threads) and applied by `minigpt.cli.main`
with `autograd.set_kernels(value)` before the command builds its model; left out, the engine keeps
its default (or MINIGPT_KERNELS). The resolved configuration a command prints shows it.
"""

import contextlib
import io
import sys

import pytest

import autograd
from minigpt.cli import main

HELP = "autograd kernels: 'reference' (plain NumPy, what a learner steps into) or 'fast' (default)"
CHEAP = ["--batch-size", "2", "--eval-batches", "1", "--sample-tokens", "4", "--preset", "tiny", "--context-length", "32",
         "--max-steps", "1"]
COMMANDS = [["train"], ["generate"], ["chat"], ["classify"], ["finetune", "classify"], ["finetune", "instruct"],
            ["finetune", "dpo"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_model_command_offers_kernels_with_its_help(command, capsys):
    with pytest.raises(SystemExit) as stop:
        main([*command, "--help"])
    assert stop.value.code == 0
    printed = " ".join(capsys.readouterr().out.split())  # argparse wraps the help
    assert "--kernels {reference,fast}" in printed and HELP in printed


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_bad_kernels_value_is_a_flag_error(command, capsys, monkeypatch):
    called = []
    monkeypatch.setattr(autograd, "set_kernels", called.append, raising=False)
    with pytest.raises(SystemExit) as stop:
        main([*command, "--kernels", "slow"])
    assert stop.value.code == 2
    assert "argument --kernels: invalid choice: 'slow' (choose from" in capsys.readouterr().err
    assert called == []


def test_kernels_is_applied_before_the_model_is_built_and_printed(tmp_path, monkeypatch):
    from minigpt.model import GPTModel

    events = []
    monkeypatch.setattr(autograd, "set_kernels", lambda name: events.append(f"set_kernels {name}"), raising=False)
    built = GPTModel.__init__

    def recording_init(self, *args, **kwargs):
        events.append("model built")
        built(self, *args, **kwargs)

    monkeypatch.setattr(GPTModel, "__init__", recording_init)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", "--out", str(tmp_path / "r"), "--kernels", "reference", *CHEAP]) == 0
    assert events[:2] == ["set_kernels reference", "model built"]
    assert events.count("set_kernels reference") == 1
    seed_line = next(line for line in printed.getvalue().splitlines() if line.startswith("seed: "))
    assert seed_line.endswith(" | kernels: reference")


def test_without_the_flag_the_engine_keeps_its_kernels(tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr(autograd, "set_kernels", called.append, raising=False)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["train", "--out", str(tmp_path / "r"), *CHEAP]) == 0
    assert called == []
    assert "kernels:" not in printed.getvalue()


def test_generate_reports_the_kernels_on_stderr_and_keeps_its_text_clean(tmp_path, monkeypatch, capsys):
    called = []
    monkeypatch.setattr(autograd, "set_kernels", called.append, raising=False)
    out = str(tmp_path / "r")
    assert main(["train", "--out", out, *CHEAP]) == 0
    capsys.readouterr()
    assert main(["generate", "--checkpoint", out, "--prompt", "Hello", "--max-new-tokens", "2",
                 "--kernels", "fast"]) == 0
    captured = capsys.readouterr()
    assert called == ["fast"]
    assert "kernels: fast" in captured.err and "kernels" not in captured.out


def test_kernels_reference_switches_the_engine(tmp_path):
    """With helper B's `autograd.set_kernels` / `get_kernels` (the real switch, not a stand-in)."""
    before = autograd.get_kernels()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["train", "--out", str(tmp_path / "r"), "--kernels", "reference", *CHEAP]) == 0
        assert autograd.get_kernels() == "reference"
    finally:
        autograd.set_kernels(before)


def test_a_bad_environment_variable_is_one_line_and_kernels_overrides_it(tmp_path, monkeypatch, capsys):
    """MINIGPT_KERNELS=quick: `minigpt train` stops with one line naming the variable; with
    --kernels the flag chooses the set and the run goes on (docs/cli.md: the flag overrides it)."""
    kernels_module = sys.modules["autograd.kernels"]  # `autograd.kernels` is the context manager
    monkeypatch.setattr(kernels_module, "_active", None)
    monkeypatch.setattr(kernels_module, "_environment_error",
                        ValueError("the environment variable MINIGPT_KERNELS must be 'reference' or 'fast', got 'quick'"))
    with pytest.raises(SystemExit) as stop:
        main(["train", "--out", str(tmp_path / "a"), *CHEAP])
    assert str(stop.value.code) == ("minigpt train: error: the environment variable MINIGPT_KERNELS must be 'reference' "
                                    "or 'fast', got 'quick' (or pass --kernels reference|fast)")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["train", "--out", str(tmp_path / "b"), "--kernels", "fast", *CHEAP]) == 0
    finally:
        autograd.set_kernels("fast")
