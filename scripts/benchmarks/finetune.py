"""Benchmark: the chapter-6 fine-tuning step, last block trainable vs everything, and against PyTorch eager.

The step is the book's (section 6.5-6.7): gpt2-small's shape (768 wide, 12 blocks, qkv bias,
dropout 0), the output head replaced by a 2-class linear layer, a batch of 8 x 120 random token ids
(120 is the chapter's longest training text) with random labels, the logits of the last position
(the book's `calc_loss_batch`), cross-entropy, backward, AdamW (lr 5e-5, weight decay 0.1).

    last-block  the book's recipe: only the last block, the final LayerNorm and the head train
    all         every parameter trains (the book's ablation, row 5)

minigpt runs `minigpt.finetune.classification` (`replace_output_head`, `set_trainable`,
`calc_loss_batch`) with `AdamW` over the trainable parameters, as `minigpt finetune classify`
does. With `--torch-python` the reference `torch_reference/classify.py` runs the same step in
eager PyTorch, written as the book writes it. Each measurement is a fresh subprocess; the sides
alternate round by round (`--rounds`), and the report gives medians over rounds of each round's
median step, and the ratios. Memory: the resident size before the first step (weights, optimizer)
and its peak during the steps (VmHWM, reset before the first step, after `malloc_trim`).

Run (the OPENBLAS_* variables some machines set pick a slower kernel):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench.py finetune --rounds 5 \\
        --torch-python /tmp/torchref/bin/python
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import statistics
import subprocess
import sys

import numpy as np

from benchmarks import check_torch_python
from benchmarks.model import _child_env, _last_json_line, time_training_steps, write_json_lines
from benchmarks.torch_reference import script_path

TRAINABLE = ("last-block", "all")


def _status_mib(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM), MiB."""
    with open("/proc/self/status", encoding="ascii") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _reset_peak_memory() -> float:
    """Give free heap memory back to the system, reset the peak resident size; return the current one (MiB)."""
    name = ctypes.util.find_library("c")
    if name is not None:
        ctypes.CDLL(name).malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as file:
        file.write("5")  # VmHWM := VmRSS (Linux >= 4.0)
    return _status_mib("VmRSS")


def measure(trainable: str, batch: int, tokens: int, warmup: int, steps: int, threads: int) -> dict:
    """Time fine-tuning steps in this process; returns seconds per phase and memory in MiB."""
    from autograd.memory import keep_freed_memory
    from autograd.parallel import set_num_threads, set_openblas_thread_timeout
    from minigpt.finetune.classification import calc_loss_batch, replace_output_head, set_trainable
    from minigpt.model import GPTModel, get_config
    from minigpt.optim import AdamW

    keep_freed_memory()  # as the `minigpt` command does
    set_openblas_thread_timeout()
    set_num_threads(threads)
    model = GPTModel(get_config("gpt2-small", drop_rate=0.0), rng=123)
    replace_output_head(model, 2, rng=123)
    set_trainable(model, trainable)
    optimizer = AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5, weight_decay=0.1)
    model.train()
    rng = np.random.default_rng(0)
    inputs = rng.integers(0, 50257, (warmup + steps, batch, tokens))
    labels = rng.integers(0, 2, (warmup + steps, batch))
    rss_before = _reset_peak_memory()
    def compute_loss(step):
        return calc_loss_batch(inputs[step], labels[step], model, pooling="last")  # the book's position

    times = time_training_steps(compute_loss, optimizer.zero_grad, optimizer.step, warmup, steps)
    return {"side": "minigpt", "trainable": trainable, "fwd_s": times["fwd_s"], "bwd_s": times["bwd_s"],
            "opt_s": times["opt_s"], "other_cpu_s": times["other_cpu_s"], "rss_before_mib": rss_before,
            "rss_peak_mib": _status_mib("VmHWM"),
            "trainable_parameters": model.num_parameters(trainable_only=True)}


def _run(side: str, trainable: str, args) -> dict:
    """One measurement in a fresh process: minigpt (this module's worker) or the torch reference."""
    common = ["--batch", str(args.batch), "--tokens", str(args.tokens), "--warmup", str(args.warmup),
              "--steps", str(args.steps), "--threads", str(args.threads), "--trainable", trainable]
    if side == "minigpt":
        command = [sys.executable, "-m", "benchmarks.finetune", "--worker"] + common
    else:
        command = [args.torch_python, script_path("classify.py")] + common
    done = subprocess.run(command, capture_output=True, text=True, env=_child_env(args.threads), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{side} fine-tuning step ({trainable}) failed:\n{done.stderr}")
    return _last_json_line(done.stdout, command)


def _step_ms(record: dict) -> float:
    """Median over the timed steps of forward + backward + optimizer, milliseconds."""
    return 1000.0 * statistics.median(sum(phases) for phases in zip(record["fwd_s"], record["bwd_s"], record["opt_s"]))


def _line(label: str, records: list[dict]) -> str:
    phase = lambda key: statistics.median(1000.0 * statistics.median(r[key]) for r in records)  # noqa: E731
    step = statistics.median(_step_ms(r) for r in records)
    before = statistics.median(r["rss_before_mib"] for r in records)
    peak = statistics.median(r["rss_peak_mib"] for r in records)
    other = sum(sum(r["other_cpu_s"]) for r in records) / max(sum(sum(r["fwd_s"] + r["bwd_s"] + r["opt_s"]) for r in records), 1e-9)
    return (f"{label:22s} step {step:8.1f} ms (fwd {phase('fwd_s'):7.1f}  bwd {phase('bwd_s'):7.1f}  opt {phase('opt_s'):6.1f})"
            f"  memory before {before:6.0f} MiB  peak {peak:6.0f} MiB (+{peak - before:5.0f})  others used {100 * other:3.0f}% of a CPU")


def _ratio(label: str, numerators: list[dict], denominators: list[dict], memory: bool = True) -> str:
    times = [_step_ms(a) / _step_ms(b) for a, b in zip(numerators, denominators)]
    text = f"{label:34s} time {statistics.median(times):.2f}x (rounds: {', '.join(f'{t:.2f}' for t in times)})"
    if memory:
        peaks = [(a["rss_peak_mib"] - a["rss_before_mib"]) / max(b["rss_peak_mib"] - b["rss_before_mib"], 1e-9)
                 for a, b in zip(numerators, denominators)]
        totals = [a["rss_peak_mib"] / b["rss_peak_mib"] for a, b in zip(numerators, denominators)]
        text += f"  step memory {statistics.median(peaks):.2f}x  peak resident {statistics.median(totals):.2f}x"
    return text


def main(argv=None) -> None:
    """Command line: see the module docstring and `--help`."""
    parser = argparse.ArgumentParser(prog="python scripts/bench.py finetune", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainable", choices=list(TRAINABLE), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=8, help="examples per step (default 8, the book's)")
    parser.add_argument("--tokens", type=int, default=120, help="tokens per example (default 120, the book's longest text)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps; the median is reported (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="alternate the sides this many times (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="BLAS, engine and torch threads (default 2)")
    parser.add_argument("--torch-python", default=None, help="a Python with torch (e.g. /tmp/torchref/bin/python); omit to skip")
    parser.add_argument("--json", default=None, help="also write every raw record to this file (JSON lines)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.trainable, args.batch, args.tokens, args.warmup, args.steps, args.threads)), flush=True)
        return

    check_torch_python(parser, args.torch_python)  # before minigpt's part, which takes minutes
    sides = ["minigpt"] + (["torch"] if args.torch_python else [])
    print(f"chapter-6 fine-tuning step: gpt2-small shape, 2-class head, batch {args.batch} x {args.tokens}, "
          f"warmup {args.warmup}, steps {args.steps}, rounds {args.rounds}, threads {args.threads}, "
          f"torch {args.torch_python or 'not run'}; numpy {np.__version__}", flush=True)
    records = {(side, trainable): [] for side in sides for trainable in TRAINABLE}
    for round_number in range(args.rounds):
        for trainable in TRAINABLE:
            for side in sides:  # alternate the sides inside each round
                records[side, trainable].append(_run(side, trainable, args))
        latest = {key: _step_ms(runs[-1]) for key, runs in records.items()}
        ratios = [f"{side} last-block/all {latest[side, 'last-block'] / latest[side, 'all']:.2f}x" for side in sides]
        if args.torch_python:
            ratios += [f"minigpt/torch {t} {latest['minigpt', t] / latest['torch', t]:.2f}x" for t in TRAINABLE]
        print(f"  round {round_number + 1}/{args.rounds}: " + ", ".join(ratios), flush=True)
    for (side, trainable), runs in records.items():
        print(_line(f"{side} {trainable}", runs))
    for side in sides:
        print(_ratio(f"{side}: last-block / all", records[side, "last-block"], records[side, "all"]))
    if args.torch_python:
        for trainable in TRAINABLE:
            print(_ratio(f"minigpt / torch, {trainable}", records["minigpt", trainable], records["torch", trainable]))
    if args.json:
        write_json_lines(args.json, [record for runs in records.values() for record in runs])


if __name__ == "__main__":
    main()
