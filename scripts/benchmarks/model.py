"""Benchmark: one GPT training step (forward, cross-entropy, backward [, AdamW]) against PyTorch eager.

For each configuration a fresh subprocess builds the model, runs warm-up steps and then timed
steps on random token batches, and reports the median milliseconds of forward+loss, backward and
the optimizer step, tokens per second and its peak resident memory (`ru_maxrss`, which is only
honest in a process of its own). With `--torch-python` the PyTorch reference shipped beside this
file, `torch_reference/train_step.py` (the book's model in eager PyTorch, `torch_reference/gpt.py`,
float32, same threads, torch.optim.AdamW), runs the same configurations in turn under that Python,
and the ratios minigpt / PyTorch are printed side by side.

Configurations (`torch_reference/gpt.py`'s CONFIGS of the same names; dropout 0, or `--dropout P`
on both sides: minigpt's masks are PyTorch's own draws, two 32-bit words of the Mersenne Twister
an element, see docs/random.md):

    book-124M  the book's GPT_CONFIG_124M (768 wide, 12 layers, 12 heads, vocabulary 50257) with
               the context of 256 it is trained with in chapter 5; batch 2 x 256 tokens
    mid        384 wide, 6 layers, 6 heads, vocabulary 50257; batch 8 x 256
    char       128 wide, 4 layers, 4 heads, vocabulary 65 (character-level Shakespeare); batch 12 x 64

Run (the OPENBLAS_* variables some machines set pick a slower kernel; subprocesses drop them):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench.py model \\
        --torch-python /tmp/torchref/bin/python

`--baseline-tree PATH` times the minigpt of another checkout too, alternating with this one (a
before/after of a change: `git worktree add /tmp/before COMMIT`, then `--baseline-tree /tmp/before`).

Shared machines are noisy: compare the ratios of one run (`--rounds` alternates the two sides and
takes the median ratio), not absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

from benchmarks import SCRIPTS_DIR, check_torch_python, child_python_path

# name -> (model config, batch size, tokens per sequence, the reference's config name)
CONFIGS = {
    "book-124M": (
        dict(vocab_size=50257, context_length=256, emb_dim=768, n_heads=12, n_layers=12, drop_rate=0.0, qkv_bias=False),
        2, 256, "book-124M",
    ),
    "mid": (
        dict(vocab_size=50257, context_length=256, emb_dim=384, n_heads=6, n_layers=6, drop_rate=0.0, qkv_bias=False),
        8, 256, "mid",
    ),
    "char": (
        dict(vocab_size=65, context_length=64, emb_dim=128, n_heads=4, n_layers=4, drop_rate=0.0, qkv_bias=False),
        12, 64, "char",
    ),
}

_TORCH_STEP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_reference", "train_step.py")
_NOISY_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _busy_seconds() -> float:
    """CPU time the whole machine has spent busy since boot (all CPUs, /proc/stat), seconds."""
    with open("/proc/stat", encoding="ascii") as file:
        fields = [int(value) for value in file.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def wait_until_quiet(max_wait: float, window: float = 3.0, threshold: float = 0.15) -> float:
    """Block until other processes used less than `threshold` CPU-seconds over `window` seconds.

    Returns the seconds waited, or -1 when the machine never became quiet within `max_wait`.
    """
    start = time.time()
    while True:
        busy, own = _busy_seconds(), _own_cpu_seconds()
        time.sleep(window)
        if (_busy_seconds() - busy) - (_own_cpu_seconds() - own) < threshold:
            return time.time() - start
        if time.time() - start > max_wait:
            return -1.0


def _peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def write_json_lines(path: str, records) -> None:
    """Write every raw record to `path`, one JSON object a line (the benchmarks' --json)."""
    with open(path, "w", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record) + "\n")


def time_training_steps(compute_loss, zero_grad, update, warmup: int, steps: int, after_step=None) -> dict:
    """Run `warmup + steps` training steps and time the phases of the last `steps` of them.

    One step: `zero_grad()`; `loss = compute_loss(step)` (the forward pass and the loss);
    `loss.backward()`; `update()` (None: no optimizer step); then `after_step(step)` if given (an
    evaluation forward pass, say), once the loss is freed. Shared by the step benchmarks (model,
    finetune, instruct, lora), so that they time the same phases the same way.

    Returns:
        Lists over the timed steps, in seconds: "fwd_s", "bwd_s", "opt_s", "after_s" (empty
        without after_step) and "other_cpu_s" (CPU time other processes took during the step:
        > 0 means the sample was disturbed); and "losses", every step's loss (warm-up included).
    """
    times = {key: [] for key in ("fwd_s", "bwd_s", "opt_s", "after_s", "other_cpu_s", "losses")}
    for step in range(warmup + steps):
        busy, own = _busy_seconds(), _own_cpu_seconds()
        start = time.perf_counter()
        zero_grad()
        loss = compute_loss(step)
        after_forward = time.perf_counter()
        loss.backward()
        after_backward = time.perf_counter()
        if update is not None:
            update()
        end = time.perf_counter()
        times["losses"].append(loss.item())
        del loss  # free the step's graph before anything else runs
        if after_step is not None:
            after_step(step)
        after_end = time.perf_counter()
        if step >= warmup:
            times["other_cpu_s"].append(round((_busy_seconds() - busy) - (_own_cpu_seconds() - own), 3))
            times["fwd_s"].append(after_forward - start)
            times["bwd_s"].append(after_backward - after_forward)
            times["opt_s"].append(end - after_backward)
            if after_step is not None:
                times["after_s"].append(after_end - end)
    return times


def measure(name: str, warmup: int, steps: int, optimizer: str, seed: int = 0, default_malloc: bool = False,
            threads: int = 2, blas_spin: bool = False, dropout: float = 0.0) -> dict:
    """Time training steps of one configuration in this process; returns seconds per phase."""
    from autograd import functional as F
    from autograd.memory import disable_process_settings, keep_freed_memory
    from autograd.parallel import set_num_threads, set_openblas_thread_timeout
    from minigpt.model import GPTModel

    disable_process_settings()  # this benchmark applies (or not) each setting itself, below
    if not default_malloc:
        keep_freed_memory()  # as `minigpt train` does (see autograd/memory.py)
    if not blas_spin:
        set_openblas_thread_timeout()  # as `minigpt train` does (see autograd/parallel.py)
    set_num_threads(threads)  # the engine's element-wise threads, as many as BLAS's

    cfg, batch_size, num_tokens, _ = CONFIGS[name]
    cfg = dict(cfg, drop_rate=dropout)
    model = GPTModel(cfg, rng=seed)
    model.train()
    adamw = None
    if optimizer == "adamw":
        from minigpt.optim import AdamW

        adamw = AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)  # the book's chapter-5 settings
    rng = np.random.default_rng(seed)
    data = rng.integers(0, cfg["vocab_size"], (warmup + steps, batch_size, num_tokens + 1))
    def compute_loss(step):
        inputs, targets = data[step, :, :-1], data[step, :, 1:]
        return F.cross_entropy(model(inputs).flatten(0, 1), targets.reshape(-1))  # (B*T, V), (B*T,)

    times = time_training_steps(compute_loss, model.zero_grad, adamw.step if adamw is not None else None, warmup, steps)
    return {
        "config": name, "batch": batch_size, "tokens": num_tokens, "optimizer": optimizer, "dropout": dropout,
        "parameters": model.num_parameters(), "fwd_s": times["fwd_s"], "bwd_s": times["bwd_s"], "opt_s": times["opt_s"],
        "other_cpu_s": times["other_cpu_s"], "loss_first": times["losses"][0], "loss_last": times["losses"][-1],
        "rss_peak_mib": _peak_rss_mib(),
    }


def _child_env(threads: int, tree: str | None = None) -> dict:
    """The subprocess's environment; `tree`: import minigpt and autograd from that checkout instead."""
    env = {key: value for key, value in os.environ.items() if key not in _NOISY_ENV}
    env["OPENBLAS_NUM_THREADS"] = str(threads)
    env["OMP_NUM_THREADS"] = str(threads)
    env["PYTHONPATH"] = child_python_path(env) if tree is None else os.pathsep.join([SCRIPTS_DIR, tree])
    return env


def _last_json_line(output: str, command: list) -> dict:
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON result from {' '.join(command)}:\n{output}")


def _maybe_wait(args) -> None:
    if args.wait_quiet > 0 and wait_until_quiet(args.wait_quiet) < 0:
        print(f"  (machine still busy after {args.wait_quiet:.0f} s of waiting; measuring anyway)", flush=True)


def run_minigpt(name: str, args, tree: str | None = None) -> dict:
    """Measure one configuration in a fresh Python process (for an honest peak memory); `tree`: the
    minigpt of another checkout (--baseline-tree), timed by this file's `measure`."""
    _maybe_wait(args)
    command = [sys.executable, "-m", "benchmarks.model", "--worker", name, "--warmup", str(args.warmup),
               "--steps", str(args.steps), "--optimizer", args.optimizer, "--threads", str(args.threads),
               "--dropout", str(args.dropout)]
    command += (["--default-malloc"] if args.default_malloc else []) + (["--blas-spin"] if args.blas_spin else [])
    done = subprocess.run(command, capture_output=True, text=True, env=_child_env(args.threads, tree), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"minigpt benchmark of {name}{' in ' + tree if tree else ''} failed:\n{done.stderr}")
    return _last_json_line(done.stdout, command)


def run_torch(name: str, args) -> dict:
    """Run the PyTorch eager reference (torch_reference/train_step.py) for the same configuration."""
    _maybe_wait(args)
    _, batch_size, num_tokens, reference_name = CONFIGS[name]
    command = [args.torch_python, _TORCH_STEP, "--config", reference_name, "--batch", str(batch_size),
               "--tokens", str(num_tokens), "--adamw", args.torch_adamw, "--warmup", str(args.warmup),
               "--steps", str(args.steps), "--threads", str(args.threads), "--dropout", str(args.dropout)]
    done = subprocess.run(command, capture_output=True, text=True, env=_child_env(args.threads), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"PyTorch reference for {name} failed:\n{done.stderr}")
    return _last_json_line(done.stdout, command)


def _median_ms(record: dict, *phases: str) -> float:
    """Median over steps of the summed phases, milliseconds."""
    return 1000.0 * statistics.median(sum(values) for values in zip(*(record[phase] for phase in phases)))


def _disturbance(records: list[dict]) -> str:
    """How much CPU other processes took during the timed steps, as a share of the step time."""
    other = sum(sum(r.get("other_cpu_s", [])) for r in records)
    wall = sum(sum(r["fwd_s"]) + sum(r["bwd_s"]) + sum(r["opt_s"]) for r in records)
    return f"  others used {100 * other / wall:4.0f}% of a CPU" if wall else ""


def summarize(name: str, ours: list[dict], theirs: list[dict], baseline: list[dict] = ()) -> list[str]:
    """Lines of the report for one configuration (ratios are medians over rounds)."""
    _, batch_size, num_tokens, _ = CONFIGS[name]
    tokens = batch_size * num_tokens
    fwd_bwd = statistics.median(_median_ms(r, "fwd_s", "bwd_s") for r in ours)
    step = statistics.median(_median_ms(r, "fwd_s", "bwd_s", "opt_s") for r in ours)
    memory = max(r["rss_peak_mib"] for r in ours)
    lines = [
        f"{name:10s} minigpt  fwd {statistics.median(_median_ms(r, 'fwd_s') for r in ours):8.1f} ms  "
        f"bwd {statistics.median(_median_ms(r, 'bwd_s') for r in ours):8.1f} ms  fwd+bwd {fwd_bwd:8.1f} ms  "
        f"step {step:8.1f} ms  {tokens / (fwd_bwd / 1000):9.0f} tokens/s (fwd+bwd)  peak {memory:7.0f} MiB"
        + _disturbance(ours)
    ]
    if baseline:
        base_step = statistics.median(_median_ms(r, "fwd_s", "bwd_s", "opt_s") for r in baseline)
        ratios = [_median_ms(a, "fwd_s", "bwd_s", "opt_s") / _median_ms(b, "fwd_s", "bwd_s", "opt_s")
                  for a, b in zip(ours, baseline)]
        lines.append(
            f"{'':10s} baseline step {base_step:8.1f} ms" + _disturbance(baseline) + f"; this / baseline: step "
            f"{statistics.median(ratios):.3f}x (rounds: {', '.join(f'{r:.3f}' for r in ratios)})"
        )
    if theirs:
        torch_fwd_bwd = statistics.median(_median_ms(r, "fwd_s", "bwd_s") for r in theirs)
        torch_step = statistics.median(_median_ms(r, "fwd_s", "bwd_s", "opt_s") for r in theirs)
        torch_memory = max(r["rss_peak_mib"] for r in theirs)
        time_ratios = [_median_ms(a, "fwd_s", "bwd_s") / _median_ms(b, "fwd_s", "bwd_s") for a, b in zip(ours, theirs)]
        step_ratios = [_median_ms(a, "fwd_s", "bwd_s", "opt_s") / _median_ms(b, "fwd_s", "bwd_s", "opt_s")
                       for a, b in zip(ours, theirs)]
        lines.append(
            f"{'':10s} torch    fwd {statistics.median(_median_ms(r, 'fwd_s') for r in theirs):8.1f} ms  "
            f"bwd {statistics.median(_median_ms(r, 'bwd_s') for r in theirs):8.1f} ms  fwd+bwd {torch_fwd_bwd:8.1f} ms  "
            f"step {torch_step:8.1f} ms  {tokens / (torch_fwd_bwd / 1000):9.0f} tokens/s (fwd+bwd)  peak {torch_memory:7.0f} MiB"
            + _disturbance(theirs)
        )
        lines.append(
            f"{'':10s} ratio minigpt/torch: fwd+bwd {statistics.median(time_ratios):.2f}x "
            f"(rounds: {', '.join(f'{r:.2f}' for r in time_ratios)})  step {statistics.median(step_ratios):.2f}x  "
            f"peak memory {memory / torch_memory:.2f}x"
        )
    return lines


def main(argv=None) -> None:
    """Command line: see the module docstring and `--help`."""
    parser = argparse.ArgumentParser(prog="python scripts/bench.py model", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS),
                        help="configurations to run (default: all)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps; the median is reported (default 5)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternate minigpt and torch this many times per config; median ratio (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="BLAS, engine and torch threads (default 2)")
    parser.add_argument("--optimizer", choices=["adamw", "none"], default="adamw",
                        help="include minigpt.optim.AdamW in the step, as the reference does (default adamw); "
                             "the fwd+bwd figures never include it")
    parser.add_argument("--dropout", type=float, default=0.0,
                        help="drop_rate of both models (default 0; the book trains with 0.1)")
    parser.add_argument("--torch-python", default=None,
                        help="a Python with torch (e.g. /tmp/torchref/bin/python) to run the reference; omit to skip")
    parser.add_argument("--torch-adamw", default="default", choices=["default", "foreach", "fused"],
                        help="the reference's AdamW implementation (default: torch.optim.AdamW's default)")
    parser.add_argument("--baseline-tree", default=None, metavar="PATH",
                        help="also time the minigpt of another checkout (e.g. `git worktree add /tmp/before COMMIT`), "
                             "alternating with this one in every round, and print the step ratio this / baseline")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="before each measurement wait up to SECONDS for other processes to go idle (default 0: no wait)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc malloc's settings alone instead of autograd.memory.keep_freed_memory()")
    parser.add_argument("--blas-spin", action="store_true",
                        help="leave OpenBLAS's idle threads spinning (its default) instead of "
                             "autograd.parallel.set_openblas_thread_timeout()")
    parser.add_argument("--json", default=None, help="also write every raw record to this file (JSON lines)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not 0.0 <= args.dropout < 1.0:
        parser.error(f"--dropout must be a probability in [0, 1), got {args.dropout}")
    if args.baseline_tree is not None and not os.path.isfile(os.path.join(args.baseline_tree, "minigpt", "model.py")):
        parser.error(f"--baseline-tree {args.baseline_tree!r} is not a minigpt checkout (no minigpt/model.py)")

    if args.worker:
        record = measure(args.worker, args.warmup, args.steps, args.optimizer, default_malloc=args.default_malloc,
                         threads=args.threads, blas_spin=args.blas_spin, dropout=args.dropout)
        print(json.dumps(record), flush=True)
        return

    check_torch_python(parser, args.torch_python)  # before minigpt's part, which takes minutes
    print(f"minigpt training-step benchmark: configs {args.configs}, warmup {args.warmup}, steps {args.steps}, "
          f"rounds {args.rounds}, threads {args.threads}, optimizer {args.optimizer}, dropout {args.dropout}, "
          f"malloc {'default' if args.default_malloc else 'keep_freed_memory'}, "
          f"OpenBLAS idle threads {'spin (default)' if args.blas_spin else 'sleep (set_openblas_thread_timeout)'}, "
          f"torch {args.torch_python or 'not run'} (torch_reference/train_step.py, AdamW {args.torch_adamw}); "
          f"numpy {np.__version__}", flush=True)
    records = []
    for name in args.configs:
        ours, theirs, baseline = [], [], []
        for _ in range(args.rounds):
            ours.append(run_minigpt(name, args))
            if args.baseline_tree:
                baseline.append(run_minigpt(name, args, tree=os.path.abspath(args.baseline_tree)))
            if args.torch_python:
                theirs.append(run_torch(name, args))
        records += [dict(r, side="minigpt") for r in ours] + [dict(r, side="torch") for r in theirs]
        records += [dict(r, side="baseline", tree=args.baseline_tree) for r in baseline]
        for line in summarize(name, ours, theirs, baseline):
            print(line, flush=True)
    if args.json:
        write_json_lines(args.json, records)


if __name__ == "__main__":
    main()
