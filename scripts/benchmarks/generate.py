"""Benchmark: tokens per second of generation, with and without the KV cache, against PyTorch eager.

A gpt2-small-sized model (the book's GPT_CONFIG_124M: 768 wide, 12 layers, 12 heads, vocabulary
50257, context 1024, random weights, dropout 0) generates `--new-tokens` tokens greedily from a
random `--prompt-tokens`-token prompt, at each batch size, with the KV cache (book ch. 4 bonus)
and without it. Every measurement runs in a fresh process: minigpt's `stream_generate`, then the
PyTorch reference `torch_reference/generate.py` (the book's model and its `generate_text_simple`
/ `generate_text_simple_cached` loops in eager PyTorch) when `--torch-python` is given. The two
sides alternate for `--rounds` rounds; the report gives medians and the per-round ratios.

Also reported: time per token as the sequence grows (median step time over four quarters of the
run: flat with the cache, growing without it), and for minigpt's cached steps where the time
goes (attention with its cache, feed-forward, layer norms, output head, the rest), with the
shape the output head sees (the last position only: one (B, C) x (C, V) BLAS product).

Run (the OPENBLAS_* variables some machines set pick a slower kernel; subprocesses drop them):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench.py generate --torch-python /tmp/torchref/bin/python

Shared machines are noisy: compare the ratios of one run, not absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from benchmarks import check_torch_python
from benchmarks.model import _child_env, _last_json_line, write_json_lines
from benchmarks.torch_reference import FOLDER as TORCH_FOLDER

# The book's GPT_CONFIG_124M at GPT-2's full context, as the reference's "gpt2-small" (no qkv bias).
CONFIG = dict(vocab_size=50257, context_length=1024, emb_dim=768, n_heads=12, n_layers=12, drop_rate=0.0, qkv_bias=False)


def _quarters(step_seconds: list[float]) -> list[float]:
    """Median milliseconds per token over each quarter of the generated steps (step 0, the prompt, left out)."""
    steps = step_seconds[1:]
    size = max(len(steps) // 4, 1)
    return [1000 * statistics.median(steps[i:i + size]) for i in range(0, size * 4, size) if steps[i:i + size]]


def _time_parts(model) -> dict:
    """Wrap the model's parts so that each call adds its seconds to a category; returns the totals."""
    totals = {"attention": 0.0, "feed-forward": 0.0, "layer norms": 0.0, "output head": 0.0}
    shapes = []

    def timed(module, category, record_shape=False):
        forward = module.forward

        def wrapper(x, *args, **kwargs):
            if record_shape:
                shapes.append(tuple(x.shape))
            start = time.perf_counter()
            out = forward(x, *args, **kwargs)
            totals[category] += time.perf_counter() - start
            return out

        module.forward = wrapper  # an instance attribute: Module.__call__ finds it first

    for block in model.trf_blocks:
        timed(block.att, "attention")
        timed(block.ff, "feed-forward")
        timed(block.norm1, "layer norms")
        timed(block.norm2, "layer norms")
    timed(model.final_norm, "layer norms")
    timed(model.out_head, "output head", record_shape=True)
    return totals, shapes


def measure(batch: int, cache: bool, prompt_tokens: int, new_tokens: int, threads: int, breakdown_steps: int) -> dict:
    """Time one generation run in this process, as `minigpt generate` runs (its process settings)."""
    from autograd.memory import keep_freed_memory
    from autograd.parallel import set_num_threads, set_openblas_thread_timeout
    from minigpt.generate import stream_generate
    from minigpt.model import GPTModel

    keep_freed_memory()
    set_openblas_thread_timeout()
    set_num_threads(threads)
    model = GPTModel(CONFIG, rng=123)
    model.eval()
    prompt = np.random.default_rng(0).integers(0, CONFIG["vocab_size"], (batch, prompt_tokens))
    context = CONFIG["context_length"]
    list(stream_generate(model, prompt, 5, context, use_cache=cache))  # warm-up
    step_seconds, generated = [], []
    start = last = time.perf_counter()
    for tokens in stream_generate(model, prompt, new_tokens, context, use_cache=cache):
        now = time.perf_counter()
        step_seconds.append(now - last)
        generated.append(tokens)
        last = now
    total = time.perf_counter() - start
    record = {"side": "minigpt", "cache": cache, "batch": batch, "step_s": step_seconds, "total_s": total,
              "checksum": int(prompt.sum() + np.sum(generated)), "threads": threads}
    if cache and breakdown_steps:
        totals, shapes = _time_parts(model)
        steps = stream_generate(model, prompt, breakdown_steps + 1, context, use_cache=True)
        next(steps)  # the prompt: not a per-token step
        for category in totals:
            totals[category] = 0.0
        start = time.perf_counter()
        for _ in steps:
            pass
        elapsed = time.perf_counter() - start
        record["breakdown_ms_per_step"] = {name: 1000 * value / breakdown_steps for name, value in totals.items()}
        record["breakdown_ms_per_step"]["rest (embeddings, sampling, Python)"] = (
            1000 * (elapsed - sum(totals.values())) / breakdown_steps)
        record["head_input_shape"] = list(shapes[-1])
    return record


def _run(command: list, threads: int, cwd=None) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, env=_child_env(threads), cwd=cwd, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}")
    return _last_json_line(done.stdout, command)


def run_minigpt(batch: int, cache: bool, args) -> dict:
    command = [sys.executable, "-m", "benchmarks.generate", "--worker", "--batches", str(batch),
               "--prompt-tokens", str(args.prompt_tokens), "--new-tokens", str(args.new_tokens),
               "--threads", str(args.threads), "--breakdown-steps", str(args.breakdown_steps)]
    return _run(command + ([] if cache else ["--no-cache-worker"]), args.threads)


def run_torch(batch: int, cache: bool, args) -> dict:
    command = [args.torch_python, os.path.join(TORCH_FOLDER, "generate.py"), "--config", "gpt2-small",
               "--batch", str(batch), "--prompt-tokens", str(args.prompt_tokens), "--new-tokens", str(args.new_tokens),
               "--threads", str(args.threads)] + (["--cache"] if cache else [])
    return _run(command, args.threads, cwd=TORCH_FOLDER)


def _tokens_per_second(record: dict) -> float:
    return record["batch"] * len(record["step_s"]) / record["total_s"]


def summarize(batch: int, cache: bool, ours: list[dict], theirs: list[dict]) -> list[str]:
    """Report lines for one (batch, cache) setting: medians over rounds, ratios per round."""
    label = f"batch {batch} {'cache   ' if cache else 'no cache'}"
    speed = statistics.median(_tokens_per_second(r) for r in ours)
    growth = [statistics.median(q) for q in zip(*(_quarters(r["step_s"]) for r in ours))]
    lines = [f"{label}  minigpt {speed:8.1f} tokens/s  ms per step by quarter of the run: "
             + " / ".join(f"{value:.1f}" for value in growth)]
    if theirs:
        torch_speed = statistics.median(_tokens_per_second(r) for r in theirs)
        torch_growth = [statistics.median(q) for q in zip(*(_quarters(r["step_s"]) for r in theirs))]
        ratios = [_tokens_per_second(a) / _tokens_per_second(b) for a, b in zip(ours, theirs)]
        lines.append(f"{'':{len(label)}s}  torch   {torch_speed:8.1f} tokens/s  ms per step by quarter of the run: "
                     + " / ".join(f"{value:.1f}" for value in torch_growth))
        lines.append(f"{'':{len(label)}s}  minigpt / torch tokens per second: {statistics.median(ratios):.2f}x "
                     f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    breakdowns = [r["breakdown_ms_per_step"] for r in ours if "breakdown_ms_per_step" in r]
    if breakdowns:
        parts = {name: statistics.median(b[name] for b in breakdowns) for name in breakdowns[0]}
        total = sum(parts.values())
        lines.append(f"{'':{len(label)}s}  minigpt cached step, {total:.1f} ms: "
                     + ", ".join(f"{name} {value:.1f} ms ({100 * value / total:.0f}%)" for name, value in parts.items())
                     + f"; output head input {tuple(ours[-1]['head_input_shape'])}")
    return lines


def _check_arguments(parser, args) -> None:
    """parser.error (exit 2, one line) for a count out of range or a --torch-python that does not work."""
    for flag, values in (("--batches", args.batches), ("--no-cache-batches", args.no_cache_batches)):
        if any(value < 1 for value in values):
            parser.error(f"{flag} must be integers >= 1, got {' '.join(map(str, values))}")
    if not args.batches and not args.no_cache_batches:
        parser.error("give at least one batch size (--batches or --no-cache-batches)")
    for flag, value, least in (("--rounds", args.rounds, 1), ("--new-tokens", args.new_tokens, 1),
                               ("--prompt-tokens", args.prompt_tokens, 1), ("--threads", args.threads, 1),
                               ("--breakdown-steps", args.breakdown_steps, 0)):
        if value < least:
            parser.error(f"{flag} must be an integer >= {least}, got {value}")
    if not args.worker:
        check_torch_python(parser, args.torch_python)  # before minigpt's part, which takes minutes


def main(argv=None) -> None:
    """Command line: see the module docstring and `--help`."""
    parser = argparse.ArgumentParser(prog="python scripts/bench.py generate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8], help="batch sizes (prompts generated together) with the cache")
    parser.add_argument("--no-cache-batches", type=int, nargs="*", default=[1],
                        help="batch sizes to run without the cache too (slow: every step runs the whole sequence)")
    parser.add_argument("--prompt-tokens", type=int, default=5, help="tokens per prompt")
    parser.add_argument("--new-tokens", type=int, default=200, help="tokens generated per prompt")
    parser.add_argument("--rounds", type=int, default=3, help="alternate minigpt and torch this many times; medians")
    parser.add_argument("--threads", type=int, default=2, help="BLAS, engine and torch threads")
    parser.add_argument("--breakdown-steps", type=int, default=20,
                        help="cached steps timed part by part after each cached run (0: none)")
    parser.add_argument("--torch-python", default=None,
                        help="a Python with torch (e.g. /tmp/torchref/bin/python) to run the reference; omit to skip")
    parser.add_argument("--json", default=None, help="also write every raw record to this file (JSON lines)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-cache-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _check_arguments(parser, args)

    if args.worker:
        record = measure(args.batches[0], not args.no_cache_worker, args.prompt_tokens, args.new_tokens, args.threads,
                         args.breakdown_steps)
        print(json.dumps(record), flush=True)
        return

    settings = [(batch, True) for batch in args.batches] + [(batch, False) for batch in args.no_cache_batches]
    print(f"minigpt generation benchmark: book GPT_CONFIG_124M (context 1024, random weights), greedy, "
          f"prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens, threads {args.threads}, rounds "
          f"{args.rounds}, torch {args.torch_python or 'not run'}; numpy {np.__version__}", flush=True)
    records = []
    for batch, cache in settings:
        ours, theirs = [], []
        for _ in range(args.rounds):
            ours.append(run_minigpt(batch, cache, args))
            if args.torch_python:
                theirs.append(run_torch(batch, cache, args))
        records += ours + theirs
        for line in summarize(batch, cache, ours, theirs):
            print(line, flush=True)
    for batch in args.no_cache_batches:
        if batch in args.batches:
            with_cache = statistics.median(_tokens_per_second(r) for r in records
                                           if r["side"] == "minigpt" and r["cache"] and r["batch"] == batch)
            without = statistics.median(_tokens_per_second(r) for r in records
                                        if r["side"] == "minigpt" and not r["cache"] and r["batch"] == batch)
            print(f"batch {batch}: minigpt with the cache / without: {with_cache / without:.1f}x "
                  f"at {args.new_tokens} new tokens", flush=True)
    if args.json:
        write_json_lines(args.json, records)


if __name__ == "__main__":
    main()
