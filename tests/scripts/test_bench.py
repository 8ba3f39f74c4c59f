"""Tests of the benchmarks (scripts/benchmarks/, run as `python scripts/bench.py NAME`): their command
line, the checks they make before measuring, and the pure helpers the measurements share.

tests/scripts/conftest.py puts scripts/ on `sys.path`, so `benchmarks` imports as bench.py sees it.
No test here measures anything worth reading.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import main as bench
from minigpt.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = Path(ROOT) / "tests" / "fixtures"


def test_bench_help(capsys):
    assert bench(["--help"]) == 0
    assert "engine" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--batches", "0"], "--batches must be integers >= 1, got 0"),
    (["--rounds", "0"], "--rounds must be an integer >= 1, got 0"),
    (["--new-tokens", "-1"], "--new-tokens must be an integer >= 1, got -1"),
])
def test_bench_generate_flag_errors_come_before_any_measurement(flags, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        bench(["generate", *flags])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("benchmark, first_measurement", [
    ("finetune", "_run"), ("instruct", "_run"), ("model", "run_minigpt"), ("generate", "run_minigpt"),
])
@pytest.mark.parametrize("torch_python, message", [
    ("/nope", "--torch-python '/nope' cannot run"), ("NO_TORCH", "cannot import torch: ModuleNotFoundError"),
])
def test_bench_torch_python_is_checked_before_any_measurement(benchmark, first_measurement, torch_python, message,
                                                              monkeypatch, capsys, tmp_path):
    import importlib

    module = importlib.import_module(f"benchmarks.{benchmark}")

    def measure(*args, **kwargs):
        raise AssertionError(f"bench {benchmark} started measuring before checking --torch-python")

    monkeypatch.setattr(module, first_measurement, measure)
    no_torch = tmp_path / "python"  # a "python" that runs but has no torch
    no_torch.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n")
    no_torch.chmod(0o755)
    with pytest.raises(SystemExit) as stopped:
        bench([benchmark, "--torch-python", str(no_torch) if torch_python == "NO_TORCH" else torch_python])
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_the_step_benchmarks_time_every_phase_of_the_timed_steps():
    """benchmarks.model.time_training_steps, the loop of bench model/finetune/instruct/lora."""
    from autograd import functional as F
    from benchmarks.model import time_training_steps
    from minigpt.model import GPTModel
    from minigpt.optim import AdamW

    model = GPTModel(dict(vocab_size=16, context_length=8, emb_dim=8, n_heads=2, n_layers=1, drop_rate=0.0,
                          qkv_bias=False), rng=0)
    optimizer = AdamW(model.parameters(), lr=1e-2)
    data = np.random.default_rng(0).integers(0, 16, (5, 2, 9))  # (steps, B, T + 1)
    calls = []

    def compute_loss(step):
        calls.append(("loss", step))
        return F.cross_entropy(model(data[step, :, :-1]).flatten(0, 1), data[step, :, 1:].reshape(-1))

    times = time_training_steps(compute_loss, optimizer.zero_grad, optimizer.step, warmup=2, steps=3,
                                after_step=lambda step: calls.append(("after", step)))
    assert calls == [(kind, step) for step in range(5) for kind in ("loss", "after")]
    for key in ("fwd_s", "bwd_s", "opt_s", "after_s", "other_cpu_s"):
        assert len(times[key]) == 3, key  # the timed steps only
    assert all(seconds > 0 for key in ("fwd_s", "bwd_s", "opt_s") for seconds in times[key])
    assert len(times["losses"]) == 5 and times["losses"][-1] < times["losses"][0]  # the updates ran: it learns
    assert time_training_steps(compute_loss, model.zero_grad, None, warmup=0, steps=1)["after_s"] == []


def test_the_benchmarks_write_raw_records_as_json_lines(tmp_path):
    import json

    from benchmarks.model import write_json_lines

    records = [{"side": "minigpt", "fwd_s": [0.5]}, {"side": "torch", "fwd_s": [0.25]}]
    write_json_lines(str(tmp_path / "raw.jsonl"), records)
    assert [json.loads(line) for line in (tmp_path / "raw.jsonl").read_text().splitlines()] == records


def test_the_benchmarks_are_no_minigpt_command(capsys):
    """They live outside the package (scripts/): `minigpt --help` does not offer them."""
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "bench" not in capsys.readouterr().out
    with pytest.raises(SystemExit) as stopped:
        main(["bench", "engine"])
    assert stopped.value.code == 2 and "invalid choice: 'bench'" in capsys.readouterr().err


def test_bench_py_runs_from_the_repository_root():
    """`python scripts/bench.py ...` as a user of a fresh clone types it: a subprocess, from the root."""
    done = subprocess.run([sys.executable, os.path.join("scripts", "bench.py"), "--help"], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    assert done.returncode == 0, done.stderr
    assert "usage: python scripts/bench.py NAME" in done.stdout and "\n  network: " in done.stdout
    done = subprocess.run([sys.executable, os.path.join("scripts", "bench.py"), "nope"], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    assert done.returncode == 2 and "bench.py: error: unknown benchmark 'nope'; expected one of: engine" in done.stderr
    done = subprocess.run([sys.executable, os.path.join("scripts", "bench.py")], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    assert done.returncode == 2 and done.stdout == "" and "bench.py: error: name a benchmark" in done.stderr


def test_a_benchmark_subprocess_imports_the_benchmarks_and_this_minigpt():
    from benchmarks import REPO_ROOT, SCRIPTS_DIR, child_python_path

    assert child_python_path({"PYTHONPATH": "/x"}).split(os.pathsep) == [SCRIPTS_DIR, REPO_ROOT, "/x"]
    done = subprocess.run([sys.executable, "-c", "import benchmarks.model, minigpt; print(minigpt.__file__)"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": child_python_path({})},
                          cwd="/", check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(os.path.join(REPO_ROOT, "minigpt"))


def test_bench_finetune_is_listed(capsys):
    from benchmarks.finetune import main as bench_main

    with pytest.raises(SystemExit):
        bench_main(["--help"])
    assert "--torch-python" in capsys.readouterr().out
    assert bench(["--help"]) == 0
    assert "finetune" in capsys.readouterr().out


def test_benchmark_runs(tmp_path, capsys):
    from benchmarks.tokenizer import main

    text_path = tmp_path / "small.txt"
    text_path.write_text((FIXTURES / "the-verdict.txt").read_text(encoding="utf-8"), encoding="utf-8")
    figures = main(["--text", str(text_path), "--repeats", "1", "--cold-runs", "1",
                    "--vocab-sizes", "300", "--libraries", "minigpt"])
    assert figures["minigpt"]["same_ids"] and figures["minigpt"]["num_tokens"] == 5145
    assert figures["minigpt"]["warm_mb_per_s"] > 0 and figures["minigpt"]["train_seconds"][300] > 0
    assert "cold MB/s" in capsys.readouterr().out
    curve = main(["--text", str(text_path), "--length-curve", "--lengths", "100", "300", "--libraries", "minigpt"])
    assert set(curve["length_curve"]["minigpt"]["emoji"]) == {100, 300}
    assert "exponent" in capsys.readouterr().out


def test_bench_help_lists_every_benchmark_and_its_options(capsys):
    from benchmarks import NAMES

    assert bench(["--help"]) == 0
    text = capsys.readouterr().out
    for name in NAMES:
        assert f"\n  {name}: " in text
    for option in ("--torch-python", "--repeats", "--steps"):
        assert option in text


def test_lora_benchmark_summary_reports_ratios_to_full_fine_tuning():
    from benchmarks.lora import summarize

    def record(mode, seconds, peak, trainable):
        return {"mode": mode, "trainable": trainable, "fwd_s": [seconds / 2] * 3, "bwd_s": [seconds / 4] * 3,
                "opt_s": [seconds / 4] * 3, "other_cpu_s": [0.0] * 3, "grads_mib": 1.0, "adamw_state_mib": 2.0,
                "rss_peak_mib": peak}

    lines = summarize({"full": [record("full", 2.0, 2000, 124_441_346)], "lora": [record("lora", 1.0, 1000, 2_666_528)]})
    assert lines[0].startswith("full       trainable 124,441,346  step    2000 ms")
    assert "vs full: time 0.50x, peak memory 0.50x" in lines[1]


def test_bench_model_checks_dropout_before_any_measurement(monkeypatch, capsys):
    import benchmarks.model as module

    def measure(*args, **kwargs):
        raise AssertionError("bench model started measuring before checking --dropout")

    monkeypatch.setattr(module, "run_minigpt", measure)
    with pytest.raises(SystemExit) as stopped:
        bench(["model", "--dropout", "1.5"])
    assert stopped.value.code == 2
    assert "--dropout must be a probability in [0, 1), got 1.5" in capsys.readouterr().err


def test_bench_qwen3_products_counts_the_weight_products_of_a_step():
    """The floor of `bench qwen3 --modes products`: 3 products of 2 * rows * in * out FLOPs per nn.Linear."""
    from benchmarks.qwen3 import CONFIGS, measure_products

    record = measure_products("qwen3-tiny", steps=1, threads=1)
    cfg, batch, tokens, _, _ = CONFIGS["qwen3-tiny"]
    emb, hidden, q, kv = cfg["emb_dim"], cfg["hidden_dim"], cfg["n_heads"] * cfg["head_dim"], cfg["n_kv_groups"] * cfg["head_dim"]
    weights = cfg["n_layers"] * (emb * q + 2 * emb * kv + q * emb + 3 * emb * hidden) + emb * cfg["vocab_size"]
    assert record["gflop"] == pytest.approx(3 * 2 * batch * tokens * weights / 1e9)
    assert record["products_s"] > 0
