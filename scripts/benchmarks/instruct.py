"""Benchmark: the book's chapter-7 training step (gpt2-medium, batch 8) against PyTorch eager.

Also the wall time of the book's instruction fine-tuning run that the step implies.

The book fine-tunes gpt2-medium (355M; 406M parameters with its separate output head) for 2
epochs of the 935 training examples in batches of 8 (116 steps per epoch, 232 in all), AdamW with
lr 5e-5 and weight decay 0.1, evaluating 5 training and 5 validation batches every 5 steps
(`train_model_simple(..., eval_freq=5, eval_iter=5)`). A batch is as long as its longest
example: this benchmark takes the mean of that length over the book's batches (the data shuffled
with seed 123) and times steps of that shape on random weights and random tokens, in a fresh
process per side and round, alternating minigpt and PyTorch:

    step  = zero_grad + forward + cross-entropy + backward + AdamW step
    eval  = one forward pass without gradients (eval mode), the unit of the evaluations

and reports the median of each, the ratio minigpt / PyTorch per round, and

    expected training time = 232 steps + (47 evaluations x 10 + the initial 10) forward passes

(the book's 15-16 minutes on a laptop CPU includes generating the test answers, timed apart).

Run (2 threads, as the machine has; the torch side needs a Python with torch):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench.py instruct --torch-python /tmp/torchref/bin/python

The PyTorch side is `torch_reference/instruct_step.py` (the book's model, `torch_reference/gpt.py`).
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

from benchmarks import check_torch_python
from benchmarks.model import _busy_seconds, _child_env, _last_json_line, _peak_rss_mib, time_training_steps

BATCH_SIZE, EPOCHS, EVAL_FREQ, EVAL_ITER = 8, 2, 5, 5  # the book's chapter-7 settings
_TORCH_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_reference", "instruct_step.py")


def book_batch_lengths(seed: int = 123) -> list[int]:
    """The padded length of every training batch of one shuffled epoch of the book's data."""
    from minigpt.finetune.instruction import InstructionDataset, load_instruction_data, split_instruction_data
    from minigpt.tokenizer import get_encoding

    train_data, _, _ = split_instruction_data(load_instruction_data())
    lengths = np.array([len(ids) for ids in InstructionDataset(train_data, get_encoding("gpt2")).encoded_texts])
    order = np.random.default_rng(seed).permutation(len(lengths))
    batches = len(lengths) // BATCH_SIZE  # drop_last=True, as the book's train loader
    # custom_collate_fn pads to the longest example + 1, and the shift by one leaves the longest's length.
    return [int(lengths[order[i * BATCH_SIZE:(i + 1) * BATCH_SIZE]].max()) for i in range(batches)]


def measure(tokens: int, warmup: int, steps: int, threads: int) -> dict:
    """Time minigpt's steps in this process (the worker)."""
    from autograd import functional as F
    from autograd import no_grad
    from autograd.memory import keep_freed_memory
    from autograd.parallel import set_num_threads, set_openblas_thread_timeout
    from minigpt.model import GPTModel, get_config
    from minigpt.optim import AdamW

    keep_freed_memory()  # as the minigpt command does
    set_openblas_thread_timeout()
    set_num_threads(threads)
    # The book's chapter-7 BASE_CONFIG: gpt2-medium, qkv bias, dropout 0, its own output head.
    model = GPTModel(get_config("gpt2-medium", qkv_bias=True, tie_weights=False, drop_rate=0.0), rng=0)
    model.train()
    optimizer = AdamW(model.parameters(), lr=0.00005, weight_decay=0.1)
    rng = np.random.default_rng(0)
    data = rng.integers(0, model.cfg.vocab_size, (warmup + steps, BATCH_SIZE, tokens + 1))
    data[:, :, -tokens // 8:] = -100  # the padding of the shorter examples is ignored
    inputs = np.maximum(data[:, :, :-1], 0)  # (steps, B, T): the padding id -100 becomes a token id

    def compute_loss(step):
        return F.cross_entropy(model(inputs[step]).flatten(0, 1), data[step, :, 1:].reshape(-1))  # (B*T, V), (B*T,)

    def evaluate(step):  # an evaluation's forward pass on the step's batch (the book's run evaluates every 5 steps)
        with no_grad():
            model.eval()
            model(inputs[step])
            model.train()

    times = time_training_steps(compute_loss, optimizer.zero_grad, optimizer.step, warmup, steps, after_step=evaluate)
    return {"side": "minigpt", "threads": threads, "batch": BATCH_SIZE, "tokens": tokens,
            "parameters": model.num_parameters(), "fwd_s": times["fwd_s"], "bwd_s": times["bwd_s"], "opt_s": times["opt_s"],
            "eval_fwd_s": times["after_s"], "rss_peak_mib": _peak_rss_mib()}


def _run(command: list, threads: int) -> dict:
    """Run one worker; add how much CPU other processes used meanwhile (a share of one CPU)."""
    busy, children = _busy_seconds(), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=_child_env(threads), check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    record = _last_json_line(done.stdout, command)
    record["others_cpu_share"] = max(0.0, (_busy_seconds() - busy) - own) / wall
    return record


def _median_s(record: dict, *phases: str) -> float:
    return statistics.median(sum(values) for values in zip(*(record[phase] for phase in phases)))


def _report(side: str, records: list[dict], steps: int, forwards: int) -> tuple[float, float]:
    step = statistics.median(_median_s(r, "fwd_s", "bwd_s", "opt_s") for r in records)
    evaluation = statistics.median(_median_s(r, "eval_fwd_s") for r in records)
    others = statistics.mean(r["others_cpu_share"] for r in records)
    print(f"{side:8s} step {step:7.2f} s (fwd {statistics.median(_median_s(r, 'fwd_s') for r in records):.2f}, "
          f"bwd {statistics.median(_median_s(r, 'bwd_s') for r in records):.2f}, "
          f"AdamW {statistics.median(_median_s(r, 'opt_s') for r in records):.2f})  eval forward {evaluation:6.2f} s  "
          f"peak {max(r['rss_peak_mib'] for r in records):6.0f} MiB  others used {100 * others:.0f}% of a CPU  "
          f"-> book run: {(steps * step + forwards * evaluation) / 60:.1f} min of training", flush=True)
    return step, evaluation


def main(argv=None) -> None:
    """Command line: see the module docstring and `--help`."""
    parser = argparse.ArgumentParser(prog="python scripts/bench.py instruct", description=__doc__.split("\n\n")[0])
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default 1)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round; the median is used (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="alternate minigpt and torch this many times (default 2)")
    parser.add_argument("--threads", type=int, default=2, help="BLAS, engine and torch threads (default 2)")
    parser.add_argument("--tokens", type=int, default=None,
                        help="tokens per example (default: the mean padded length of the book's batches)")
    parser.add_argument("--torch-python", default=None,
                        help="a Python with torch (e.g. /tmp/torchref/bin/python) to run the reference; omit to skip")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(measure(args.tokens, args.warmup, args.steps, args.threads)), flush=True)
        return
    check_torch_python(parser, args.torch_python)  # before minigpt's part, which takes minutes
    lengths = book_batch_lengths()
    tokens = args.tokens or round(statistics.mean(lengths))
    steps = EPOCHS * len(lengths)
    evaluations = len(range(0, steps, EVAL_FREQ))
    forwards = (evaluations + 1) * 2 * EVAL_ITER  # each evaluation (and the initial losses): 5 train + 5 val batches
    print(f"chapter-7 step benchmark: gpt2-medium (qkv bias, own output head), batch {BATCH_SIZE} x {tokens} tokens "
          f"(book batches: {min(lengths)}-{max(lengths)}, mean {statistics.mean(lengths):.1f}), threads {args.threads}, "
          f"warmup {args.warmup}, steps {args.steps}, rounds {args.rounds}; the book's run = {steps} steps + {forwards} "
          f"evaluation forward passes; numpy {np.__version__}", flush=True)
    ours, theirs = [], []
    for _ in range(args.rounds):
        ours.append(_run([sys.executable, "-m", "benchmarks.instruct", "--worker", "--tokens", str(tokens),
                          "--warmup", str(args.warmup), "--steps", str(args.steps), "--threads", str(args.threads)],
                         args.threads))
        if args.torch_python:
            theirs.append(_run([args.torch_python, _TORCH_SCRIPT, "--tokens", str(tokens), "--warmup", str(args.warmup),
                                "--steps", str(args.steps), "--threads", str(args.threads)], args.threads))
    step, evaluation = _report("minigpt", ours, steps, forwards)
    if theirs:
        torch_step, torch_evaluation = _report("torch", theirs, steps, forwards)
        ratios = [_median_s(a, "fwd_s", "bwd_s", "opt_s") / _median_s(b, "fwd_s", "bwd_s", "opt_s") for a, b in zip(ours, theirs)]
        print(f"ratio minigpt/torch: step {statistics.median(ratios):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in ratios)}), "
              f"eval forward {evaluation / torch_evaluation:.2f}x", flush=True)


if __name__ == "__main__":
    main()
