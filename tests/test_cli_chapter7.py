"""The chapter-7 commands: `minigpt evaluate`, `minigpt finetune instruct`, `minigpt chat`."""

import contextlib
import fcntl
import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from support.fake_hub import FakeHub
from support.fake_judge import FakeJudge
from minigpt.cli import main

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RESPONSES = FIXTURES / "instruction" / "instruction-data-with-response.json"


def test_evaluate_offline(capsys):
    assert main(["evaluate", str(RESPONSES), "--examples", "1"]) == 0
    out = capsys.readouterr().out
    assert "110 entries" in out
    assert "ROUGE-L F1: 0.583 | exact match: 15.5 % (17 of 110)" in out
    assert "  reference: The car is as fast as lightning.\n  model:     The car is as fast as a bullet." in out
    assert "cumulonimbus" not in out  # only one example asked for
    assert "judge" not in out


def test_evaluate_with_a_judge(tmp_path, capsys):
    entries = json.loads(RESPONSES.read_text())[:3]
    path = tmp_path / "responses.json"
    path.write_text(json.dumps(entries))
    with FakeJudge(["80", "not sure", "60"]) as judge:
        assert main(["evaluate", str(path), "--judge-url", judge.url("/v1/chat/completions"), "--judge-model", "qwen"]) == 0
    out = capsys.readouterr().out
    assert "judge: qwen at http://127.0.0.1:" in out and "(OpenAI-compatible API)" in out
    assert "Could not convert score: 'not sure'" in out
    assert "Number of scores: 2 of 3\nAverage score: 70.00" in out
    assert judge.requests[0][1]["model"] == "qwen"


def test_evaluate_errors(tmp_path):
    with FakeJudge(mode="not-found") as judge:
        with pytest.raises(SystemExit, match="minigpt evaluate: error: judge: .* answered HTTP 404 .*llama3"):
            main(["evaluate", str(RESPONSES), "--judge-url", judge.url()])
    with pytest.raises(SystemExit, match="--judge-url: url: expected the full chat endpoint"):
        main(["evaluate", str(RESPONSES), "--judge-url", "http://localhost:11434"])
    with pytest.raises(SystemExit, match="no such file"):
        main(["evaluate", str(tmp_path / "missing.json")])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"instruction": "a", "input": "", "output": "b"}]))
    with pytest.raises(SystemExit, match="entry 0 has no text field 'model_response' \\(pick the answer's field with --json-key\\)"):
        main(["evaluate", str(path)])


# --------------------------------------------------------------------------------------------
# minigpt finetune instruct, then minigpt chat on its result
# --------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
QUICK = ["--max-examples", "8", "--batch-size", "4", "--epochs", "1", "--eval-every", "1", "--eval-batches", "1",
         "--max-new-tokens", "4", "--generate-batch-size", "3"]


def run_quietly(arguments):
    printed = io.StringIO()  # (module-scoped fixtures cannot use capsys)
    with contextlib.redirect_stdout(printed):
        status = main(arguments)
    return status, printed.getvalue()


@pytest.fixture(scope="module")
def assistant(tmp_path_factory):
    """A tiny GPT pretrained for one step, then instruction-tuned on 8 entries; and what it printed."""
    base, out = tmp_path_factory.mktemp("base"), tmp_path_factory.mktemp("assistant")
    status, _ = run_quietly(["train", "--max-steps", "1", "--out", str(base), "--preset", "tiny", "--batch-size", "2",
                             "--eval-batches", "1", "--sample-tokens", "2"])
    assert status == 0
    status, printed = run_quietly(["finetune", "instruct", "--checkpoint", str(base), "--out", str(out), "--lr", "1e-3", *QUICK])
    assert status == 0
    return out, printed


def test_finetune_instruct_writes_the_books_files(assistant):
    out, printed = assistant
    assert "8 train / 8 test / 8 validation; 2 batches of 4 per epoch" in printed
    assert "Initial losses\n   Training loss: " in printed
    before, after = map(float, re.search(r"Validation loss: ([\d.]+) before, ([\d.]+) after", printed).groups())
    assert after < before  # two steps at lr 1e-3 already learn the prompt format
    assert (out / "checkpoint.safetensors").is_file() and (out / "history.json").is_file()
    entries = json.loads((out / "instruction-data-with-response.json").read_text())
    assert len(entries) == 8 and all(isinstance(entry["model_response"], str) for entry in entries)
    assert entries[0]["instruction"] == "Rewrite the sentence using a simile."  # the test split's first entry
    assert f"minigpt chat --checkpoint {out}" in printed


def test_finetune_instruct_refuses_to_overwrite_and_checks_flags(assistant, tmp_path):
    out, _ = assistant
    with pytest.raises(SystemExit, match="already holds a run; pass --overwrite"):
        main(["finetune", "instruct", "--checkpoint", str(out), "--out", str(out)])
    with pytest.raises(SystemExit, match="--batch-size must be >= 1, got 0"):
        main(["finetune", "instruct", "--checkpoint", str(out), "--out", str(tmp_path), "--batch-size", "0"])
    with pytest.raises(SystemExit, match="need at least --batch-size=8 for training"):
        main(["finetune", "instruct", "--checkpoint", str(out), "--out", str(tmp_path), "--max-examples", "4"])


def chat_reference(out, message, max_new_tokens):
    """The answer the library gives to one chat message (greedy, stopped at end-of-text)."""
    from minigpt.checkpoint import load_checkpoint
    from minigpt.cli.chat import chat_prompt
    from minigpt.generate import generate, text_to_token_ids
    from minigpt.model import GPTModel, get_config
    from minigpt.tokenizer import get_encoding

    model_state, _, metadata = load_checkpoint(str(out / "checkpoint.safetensors"))
    model = GPTModel(get_config(metadata["trainer"]["run_info"]["model_config"]), rng=0)
    model.load_state_dict(model_state)
    tokenizer = get_encoding("gpt2")
    ids = text_to_token_ids(chat_prompt(message), tokenizer)
    out_ids = generate(model, ids, max_new_tokens, model.cfg.context_length, eos_id=tokenizer.eot_token)
    return tokenizer.decode(out_ids[0, ids.shape[1]:].tolist()).lstrip()


def test_chat_answers_piped_lines(assistant):
    out, _ = assistant
    done = subprocess.run([sys.executable, "-m", "minigpt", "chat", "--checkpoint", str(out), "--max-new-tokens", "6"],
                          input="Name a color.\n\n  Say hi.  \n", capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    answers = done.stdout.split("\n")
    assert answers[:2] == [chat_reference(out, "Name a color.", 6), chat_reference(out, "Say hi.", 6)]
    assert answers[2:] == [""]  # the empty line got no answer
    assert "Ctrl-D or Ctrl-C quits" in done.stderr


def test_chat_notes_a_message_longer_than_the_context(assistant):
    # A message beyond the model's context (128 tokens here) was cut silently; generate said so.
    out, _ = assistant
    done = subprocess.run([sys.executable, "-m", "minigpt", "chat", "--checkpoint", str(out), "--max-new-tokens", "2"],
                          input="Name a color.\n" + "word " * 200 + "\n", capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    notes = [line for line in done.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "more than the model's context of 128" in notes[0], done.stderr  # the long line only


@pytest.fixture(scope="module")
def broken_assistant(assistant, tmp_path_factory):
    """The assistant with NaN token embeddings: every answer's logits are NaN."""
    from minigpt.checkpoint import load_checkpoint, save_checkpoint

    out = tmp_path_factory.mktemp("broken")
    model_state, optimizer_state, metadata = load_checkpoint(str(assistant[0] / "checkpoint.safetensors"))
    model_state["tok_emb.weight"][...] = float("nan")
    save_checkpoint(str(out / "checkpoint.safetensors"), model_state, optimizer_state, metadata)
    return out


def test_chat_says_when_the_weights_give_nan(broken_assistant):
    done = subprocess.run([sys.executable, "-m", "minigpt", "chat", "--checkpoint", str(broken_assistant)],
                          input="Name a color.\nSay hi.\n", capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("minigpt chat: error: the model's logits are not finite at step 0")
    assert done.stdout == "\n"  # the failed answer's line is ended; the second line is not tried


def test_chat_in_a_terminal_goes_on_after_nan(broken_assistant, monkeypatch, capsys):
    """Interactively, a failed answer is reported in one line and the next instruction is read."""
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stdin", Terminal("Name a color.\nSay hi.\n"))
    assert main(["chat", "--checkpoint", str(broken_assistant)]) == 0
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("minigpt chat: error:")]
    assert len(errors) == 2 and "not finite" in errors[0]  # both messages were answered with the error


def test_chat_prompt_is_the_training_text():
    from minigpt.cli.chat import chat_prompt
    from minigpt.finetune.instruction import InstructionDataset
    from minigpt.tokenizer import get_encoding

    tokenizer = get_encoding("gpt2")
    entry = {"instruction": "Name a color.", "input": "", "output": "Blue."}
    prompt_ids = tokenizer.encode(chat_prompt("Name a color."))
    assert InstructionDataset([entry], tokenizer)[0][:len(prompt_ids)] == prompt_ids  # a prefix of what it learnt


def _read_until(fd, marker: bytes, timeout: float = 60.0) -> bytes:
    seen, deadline = b"", time.monotonic() + timeout
    while marker not in seen:
        if time.monotonic() > deadline:
            raise AssertionError(f"{marker!r} did not appear; got {seen!r}")
        if select.select([fd], [], [], 0.5)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
    return seen


def _wait_until_reading_the_terminal(pid: int, timeout: float = 60.0) -> None:
    """Wait until process `pid` sleeps in readline's select() on the terminal (Linux: its wchan).

    NOTE: a Ctrl-C typed after the prompt is written but before readline enters select() is lost
    until the next key: CPython's C signal handler only sets a flag, which readline's loop checks
    when select() is interrupted, and a select() entered after the signal is not. A person cannot
    hit that window of microseconds; a test that presses the key the moment it sees the prompt can,
    when the machine is loaded (reproduced by holding the process after its write with strace's
    `inject=write:delay_exit`). So the test presses only once the process is waiting for input.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/wchan") as file:
                waiting_in = file.read()
        except OSError:
            waiting_in = ""
        if waiting_in in ("", "0"):  # no wchan here (not Linux, or hidden): a pause instead
            time.sleep(0.5)
            return
        if "poll" in waiting_in or "select" in waiting_in:  # poll_schedule_timeout, do_select, do_sys_poll
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not wait for input within {timeout} s")


def _take_the_terminal():
    """In the child: a new session whose controlling terminal is stdin, so that Ctrl-C sends SIGINT."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.mark.parametrize("key, name", [(b"\x04", "Ctrl-D"), (b"\x03", "Ctrl-C")])
def test_chat_in_a_terminal_quits_cleanly(assistant, key, name):
    out, _ = assistant
    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "minigpt", "chat", "--checkpoint", str(out), "--max-new-tokens", "3"],
                               stdin=terminal, stdout=terminal, stderr=terminal, cwd=ROOT, preexec_fn=_take_the_terminal)
    os.close(terminal)
    try:
        _read_until(controller, b">>> ")
        os.write(controller, b"Name a color.\r")
        _read_until(controller, b">>> ")  # the answer, then the next prompt
        _wait_until_reading_the_terminal(process.pid)
        os.write(controller, key)
        tail = _read_until(controller, b"bye")
        assert process.wait(timeout=30) == 0, name
        assert b"Traceback" not in tail
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)


def test_chat_needs_a_checkpoint(tmp_path):
    with pytest.raises(SystemExit, match="no checkpoint there"):
        main(["chat", "--checkpoint", str(tmp_path)])


# --------------------------------------------------------------------------------------------
# The gpt2 path (--model gpt2-medium) through a fake hub
# --------------------------------------------------------------------------------------------


def _serve_as_gpt2_medium(monkeypatch, tmp_path, folder):
    files = {"openai-community/gpt2-medium": {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")}}
    hub = FakeHub(files)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("MINIGPT_HOME", str(tmp_path / "cache"))
    return hub


def test_finetune_instruct_from_the_hub_end_to_end(monkeypatch, tmp_path, capsys):
    from minigpt.model import GPTModel

    # A stand-in for gpt2-medium with GPT-2's vocabulary, in the hub's layout, 0.8M parameters.
    stand_in = GPTModel(dict(vocab_size=50257, context_length=128, emb_dim=16, n_heads=2, n_layers=1, drop_rate=0.0,
                             qkv_bias=True, tie_weights=True), rng=0)
    folder = tmp_path / "stand-in"
    stand_in.save_pretrained(folder)
    with _serve_as_gpt2_medium(monkeypatch, tmp_path, folder):
        assert main(["finetune", "instruct", "--out", str(tmp_path / "run"), "--lr", "1e-3", *QUICK]) == 0
    printed = capsys.readouterr().out
    assert f"model: pretrained gpt2-medium, {stand_in.num_parameters():,} parameters, context 128" in printed
    assert len(json.loads((tmp_path / "run" / "instruction-data-with-response.json").read_text())) == 8


def test_finetune_instruct_needs_gpt2s_vocabulary(monkeypatch, tmp_path):
    # The tiny GPT-2 checkpoint of the fixtures has 512 token ids: no <|endoftext|> (50256).
    with _serve_as_gpt2_medium(monkeypatch, tmp_path, FIXTURES / "gpt2-tiny"):
        with pytest.raises(SystemExit, match="vocabulary of 512 ids has no <\\|endoftext\\|> id \\(50256\\)"):
            main(["finetune", "instruct", "--out", str(tmp_path / "run"), *QUICK])
