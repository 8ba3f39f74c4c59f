"""Benchmark: a LoRA fine-tuning step of GPT-2 small against full fine-tuning (appendix E).

Each mode runs in a fresh subprocess (so its peak resident memory, `ru_maxrss`, is its own),
builds GPT-2 small (124M, random weights: the cost does not depend on their values), prepares it
for fine-tuning, and times steps of forward, loss, backward and AdamW on random token batches:

    full        every parameter trains (AdamW keeps two moments of all 124M numbers)
    last-block  the book's chapter-6 recipe: the last transformer block, the final LayerNorm and
                the head train, the rest is frozen
    lora        the book's appendix-E recipe: everything frozen, then every Linear wrapped with
                rank-16 LoRA (alpha 16); only the A and B matrices train

Tasks: `classify` (appendix E: a 2-class head on the last token, batch 8 x 120 tokens) and
`instruct` (chapter 7: the language-model head, next-token loss, batch 8 x 128 tokens).

Modes alternate within each round (full, last-block, lora, full, ...) and the medians over rounds
are reported, with the step time and peak memory relative to full fine-tuning. Run:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench.py lora --rounds 3

References: Hu et al. 2021, "LoRA", section 4.2 (memory: no optimizer state for frozen weights);
Raschka, "Build a Large Language Model (From Scratch)", appendix E.5 and chapter 6.5.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

import numpy as np

from benchmarks.model import _child_env, _last_json_line, _peak_rss_mib, time_training_steps

MODES = ("full", "last-block", "lora")
# task -> (batch size, tokens per sequence)
TASKS = {"classify": (8, 120), "instruct": (8, 128)}


def prepare_model(mode: str, task: str, rank: int, alpha: float, seed: int = 0):
    """GPT-2 small set up for one fine-tuning mode; returns the model (see the module docstring)."""
    from minigpt.model import GPTModel
    from minigpt.nn import Linear, replace_linear_with_lora

    model = GPTModel("gpt2-small", rng=seed)
    if task == "classify":
        model.out_head = Linear(model.cfg.emb_dim, 2, rng=seed)  # chapter 6's 2-class head
    if mode == "full":
        return model
    for parameter in model.parameters():
        parameter.requires_grad = False
    if mode == "last-block":
        for module in (model.trf_blocks[-1], model.final_norm, model.out_head):
            module.requires_grad_(True)
    else:
        replace_linear_with_lora(model, rank=rank, alpha=alpha, rng=seed)
    return model


def measure(mode: str, task: str, warmup: int, steps: int, rank: int, alpha: float, threads: int) -> dict:
    """Time fine-tuning steps of one mode in this process; returns seconds per phase and memory."""
    from autograd import functional as F
    from autograd.memory import keep_freed_memory
    from autograd.parallel import set_num_threads, set_openblas_thread_timeout
    from minigpt.optim import AdamW

    keep_freed_memory()  # as the minigpt command does
    set_openblas_thread_timeout()
    set_num_threads(threads)
    model = prepare_model(mode, task, rank, alpha)
    model.train()
    weights_mib = sum(p.data.nbytes for p in model.parameters()) / 2**20
    optimizer = AdamW(model.parameters(), lr=5e-5, weight_decay=0.1)  # the book's chapter-6 settings
    state_mib = sum(flat.exp_avg.nbytes + flat.exp_avg_sq.nbytes for flat in optimizer._flat_groups) / 2**20
    batch_size, num_tokens = TASKS[task]
    rng = np.random.default_rng(0)
    vocab = model.cfg.vocab_size
    data = rng.integers(0, vocab, (warmup + steps, batch_size, num_tokens + 1))
    labels = rng.integers(0, 2, (warmup + steps, batch_size))
    def compute_loss(step):
        if task == "classify":
            logits = model(data[step, :, :-1])[:, -1, :]  # (B, 2): the last token's logits (ch. 6.6)
            return F.cross_entropy(logits, labels[step])
        return F.cross_entropy(model(data[step, :, :-1]).flatten(0, 1), data[step, :, 1:].reshape(-1))  # (B*T, V), (B*T,)

    times = time_training_steps(compute_loss, optimizer.zero_grad, optimizer.step, warmup, steps)
    # The last step's gradients are still there (zero_grad runs at the start of a step).
    grads_mib = sum(p.grad.nbytes for p in model.parameters() if p.grad is not None) / 2**20
    return {
        "mode": mode, "task": task, "trainable": model.num_parameters(trainable_only=True),
        "fwd_s": times["fwd_s"], "bwd_s": times["bwd_s"], "opt_s": times["opt_s"], "other_cpu_s": times["other_cpu_s"],
        "weights_mib": weights_mib, "grads_mib": grads_mib, "adamw_state_mib": state_mib, "rss_peak_mib": _peak_rss_mib(),
    }


def run_mode(mode: str, args) -> dict:
    """Measure one mode in a fresh Python process."""
    command = [sys.executable, "-m", "benchmarks.lora", "--worker", mode, "--task", args.task,
               "--warmup", str(args.warmup), "--steps", str(args.steps), "--rank", str(args.rank),
               "--alpha", str(args.alpha), "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, env=_child_env(args.threads), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"LoRA benchmark of {mode} failed:\n{done.stderr}")
    return _last_json_line(done.stdout, command)


def _median_step_ms(record: dict) -> float:
    return 1000.0 * statistics.median(f + b + o for f, b, o in zip(record["fwd_s"], record["bwd_s"], record["opt_s"]))


def summarize(results: dict[str, list[dict]]) -> list[str]:
    """One line per mode: medians over rounds, and ratios to full fine-tuning."""
    full_step = statistics.median(_median_step_ms(r) for r in results["full"]) if "full" in results else None
    full_peak = statistics.median(r["rss_peak_mib"] for r in results["full"]) if "full" in results else None
    lines = []
    for mode, records in results.items():
        step = statistics.median(_median_step_ms(r) for r in records)
        backward = 1000.0 * statistics.median(statistics.median(r["bwd_s"]) for r in records)
        update = 1000.0 * statistics.median(statistics.median(r["opt_s"]) for r in records)
        peak = statistics.median(r["rss_peak_mib"] for r in records)
        other = sum(sum(r["other_cpu_s"]) for r in records)
        wall = sum(sum(r["fwd_s"]) + sum(r["bwd_s"]) + sum(r["opt_s"]) for r in records)
        line = (f"{mode:10s} trainable {records[0]['trainable']:>11,}  step {step:7.0f} ms (backward {backward:6.0f}, "
                f"AdamW {update:5.0f})  peak RSS {peak:6.0f} MiB  grads {records[0]['grads_mib']:5.0f} MiB  "
                f"AdamW state {records[0]['adamw_state_mib']:5.0f} MiB")
        if full_step and mode != "full":
            line += f"  | vs full: time {step / full_step:.2f}x, peak memory {peak / full_peak:.2f}x"
        line += f"  (others used {100 * other / wall:.0f}% of a CPU)" if wall else ""
        lines.append(line)
    return lines


def main(argv=None) -> None:
    """Command line: see the module docstring and `--help`."""
    parser = argparse.ArgumentParser(prog="python scripts/bench.py lora", description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES, help="modes to run (default: all)")
    parser.add_argument("--task", choices=list(TASKS), default="classify",
                        help="classify: 2-class head, batch 8 x 120 (default); instruct: LM head, batch 8 x 128")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank (default 16, as appendix E)")
    parser.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (default 16, as appendix E)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per process; the median is used (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="alternate the modes this many times; medians (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="BLAS and engine threads (default 2)")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(args.worker, args.task, args.warmup, args.steps, args.rank, args.alpha, args.threads)))
        return
    print(f"GPT-2 small, task {args.task} (batch {TASKS[args.task][0]} x {TASKS[args.task][1]} tokens), "
          f"LoRA rank {args.rank} alpha {args.alpha:g}, {args.threads} threads, {args.rounds} rounds", flush=True)
    results: dict[str, list[dict]] = {mode: [] for mode in args.modes}
    for number in range(args.rounds):
        for mode in args.modes:
            record = run_mode(mode, args)
            results[mode].append(record)
            print(f"  round {number + 1} {mode:10s} step {_median_step_ms(record):7.0f} ms  peak {record['rss_peak_mib']:6.0f} MiB", flush=True)
    for line in summarize(results):
        print(line)


if __name__ == "__main__":
    main()
