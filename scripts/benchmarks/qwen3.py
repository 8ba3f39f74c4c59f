"""Benchmark: a Qwen3-shaped model's training step and cached generation against the book's qwen3.py in PyTorch eager.

The issue-23 target: a training step of a small Qwen3-shaped model (about 100M parameters) in at
most 0.7x the time of PyTorch eager running the book's `pkg/llms_from_scratch/qwen3.py`, and
greedy generation with the KV cache at least as many tokens per second as the book's
`kv_cache/qwen3.py` with `kv_cache/generate.py`'s `generate_text_simple`.

Configurations (the book's config keys, float32, no tied head as the book's Qwen3Model has none):

    qwen3-100M  Qwen3's shape at GPT-2-small's width: emb_dim 768, 12 layers, 12 query heads of
                64, 4 kv heads, SwiGLU hidden 2048, qk_norm, vocabulary 32768 (126M parameters
                with the untied head, 101M without); training batch 2 x 256; generation: one
                prompt of 32 tokens, 64 new tokens
    qwen3-tiny  the "qwen3-tiny" preset's shape with vocabulary 8192; batch 4 x 128; 32 + 64 tokens

Each side runs in a fresh process: minigpt (`Qwen3Model`, minigpt.optim.AdamW lr 4e-4, weight
decay 0.1, `minigpt.generate.generate` at temperature 0 with the cache) and, with --torch-python
and --book-pkg, torch_reference/qwen3_step.py under that Python (torch.optim.AdamW, same settings).
`--rounds` alternates the two sides; ratios are per round, then the median.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench.py qwen3 \\
        --torch-python /tmp/ref-llama/bin/python --book-pkg /work/book/pkg
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

from benchmarks import check_torch_python, child_python_path

# name -> (config, training batch, training tokens, prompt tokens, new tokens)
CONFIGS = {
    "qwen3-100M": (dict(vocab_size=32768, context_length=1024, emb_dim=768, n_heads=12, n_layers=12, hidden_dim=2048,
                        head_dim=64, qk_norm=True, n_kv_groups=4, rope_base=1_000_000.0), 2, 256, 32, 64),
    "qwen3-tiny": (dict(vocab_size=8192, context_length=256, emb_dim=128, n_heads=4, n_layers=2, hidden_dim=384,
                        head_dim=32, qk_norm=True, n_kv_groups=2, rope_base=1_000_000.0), 4, 128, 32, 64),
}
_TORCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_reference", "qwen3_step.py")
_NOISY_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def measure_train(name: str, warmup: int, steps: int, threads: int) -> dict:
    """Seconds per phase of `steps` timed training steps of minigpt's Qwen3Model, in this process."""
    from autograd import functional as F
    from autograd.parallel import set_num_threads
    from minigpt.qwen3 import Qwen3Model
    from minigpt.optim import AdamW

    set_num_threads(threads)
    cfg, batch, tokens, _, _ = CONFIGS[name]
    model = Qwen3Model(cfg, rng=0)
    optimizer = AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)  # also applies the process settings
    data = np.random.default_rng(0).integers(0, cfg["vocab_size"], (warmup + steps, batch, tokens + 1))
    fwd, bwd, opt, losses = [], [], [], []
    for step in range(warmup + steps):
        start = time.perf_counter()
        optimizer.zero_grad()
        logits = model(data[step, :, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), data[step, :, 1:].reshape(-1))
        after_forward = time.perf_counter()
        loss.backward()
        after_backward = time.perf_counter()
        optimizer.step()
        end = time.perf_counter()
        losses.append(loss.item())
        del loss, logits
        if step >= warmup:
            fwd.append(after_forward - start)
            bwd.append(after_backward - after_forward)
            opt.append(end - after_backward)
    return {"fwd_s": fwd, "bwd_s": bwd, "opt_s": opt, "loss_first": losses[0], "loss_last": losses[-1],
            "parameters": model.num_parameters(), "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def measure_products(name: str, steps: int, threads: int) -> dict:
    """Seconds of the training step's weight products alone: a floor for any NumPy implementation.

    Every nn.Linear of the step (the 7 of each block and the output head) with the step's shapes,
    as NumPy float32 products on OpenBLAS's threads into preallocated outputs, nothing else: the
    forward product x @ W^T and the two of the backward pass, dY @ W (the input's gradient) and
    dY^T @ x (the weight's). Attention's own products (about 1 % of the FLOPs here) and all
    element-wise work are left out, so the real step can only take longer.

    Args: name, a key of CONFIGS; steps, timed repetitions after one warm-up (the median is
    returned); threads, recorded only: the caller's OPENBLAS_NUM_THREADS sets BLAS's threads (the
    benchmark's subprocess gets `--threads`).
    Returns: {"config", "products_s" (seconds), "gflop" (the products' 10^9 FLOPs), "threads"}.
    """
    cfg, batch, tokens, _, _ = CONFIGS[name]
    rows = batch * tokens
    emb, heads, head_dim, groups = cfg["emb_dim"], cfg["n_heads"], cfg["head_dim"], cfg["n_kv_groups"]
    shapes = [(emb, heads * head_dim), (emb, groups * head_dim), (emb, groups * head_dim), (heads * head_dim, emb),
              (emb, cfg["hidden_dim"]), (emb, cfg["hidden_dim"]), (cfg["hidden_dim"], emb)] * cfg["n_layers"]
    shapes.append((emb, cfg["vocab_size"]))  # the output head
    rng = np.random.default_rng(0)
    operands = []
    for fan_in, fan_out in shapes:
        x = rng.standard_normal((rows, fan_in), dtype=np.float32)
        weight = rng.standard_normal((fan_out, fan_in), dtype=np.float32)
        dy = rng.standard_normal((rows, fan_out), dtype=np.float32)
        operands.append((x, weight, dy, np.empty((rows, fan_out), np.float32), np.empty((rows, fan_in), np.float32),
                         np.empty((fan_out, fan_in), np.float32)))
    totals = []
    for _ in range(steps + 1):  # the first is a warm-up
        start = time.perf_counter()
        for x, weight, dy, y, dx, dweight in operands:
            np.matmul(x, weight.T, out=y)  # forward
            np.matmul(dy, weight, out=dx)  # backward: the input's gradient
            np.matmul(dy.T, x, out=dweight)  # backward: the weight's gradient
        totals.append(time.perf_counter() - start)
    flops = sum(3 * 2 * rows * fan_in * fan_out for fan_in, fan_out in shapes)
    return {"config": name, "products_s": statistics.median(totals[1:]), "gflop": flops / 1e9, "threads": threads}


def measure_generate(name: str, rounds: int, threads: int) -> dict:
    """Seconds of greedy cached generation (prompt + new tokens) with minigpt's Qwen3Model."""
    from autograd.parallel import set_num_threads
    from minigpt.generate import generate
    from minigpt.qwen3 import Qwen3Model

    set_num_threads(threads)
    cfg, _, _, prompt_tokens, new_tokens = CONFIGS[name]
    model = Qwen3Model(cfg, rng=0).eval()
    prompt = np.random.default_rng(0).integers(0, cfg["vocab_size"], (1, prompt_tokens))
    seconds = []
    for _ in range(rounds + 1):  # the first round warms up
        start = time.perf_counter()
        generate(model, prompt, new_tokens, cfg["context_length"], temperature=0.0, use_cache=True)
        seconds.append(time.perf_counter() - start)
    return {"generate_s": seconds[1:], "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _env(threads: int) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in _NOISY_ENV}
    env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads), PYTHONPATH=child_python_path(env))
    return env


def _run(command: list, threads: int) -> dict:
    done = subprocess.run(command, capture_output=True, text=True, env=_env(threads), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} ... failed:\n{done.stderr[-3000:]}")
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def _ours(name: str, mode: str, args) -> dict:
    return _run([sys.executable, "-m", "benchmarks.qwen3", "--worker", mode, "--configs", name, "--warmup", str(args.warmup),
                 "--steps", str(args.steps), "--threads", str(args.threads)], args.threads)


def _theirs(name: str, mode: str, args) -> dict:
    cfg, batch, tokens, prompt_tokens, new_tokens = CONFIGS[name]
    return _run([args.torch_python, _TORCH, "--book-pkg", args.book_pkg, "--config", json.dumps(cfg), "--mode", mode,
                 "--batch", str(batch), "--tokens", str(tokens if mode == "train" else prompt_tokens),
                 "--new-tokens", str(new_tokens), "--warmup", str(args.warmup), "--steps", str(args.steps),
                 "--threads", str(args.threads)], args.threads)


def _step_s(record: dict) -> float:
    return statistics.median(a + b + c for a, b, c in zip(record["fwd_s"], record["bwd_s"], record["opt_s"]))


def report(name: str, mode: str, ours: list, theirs: list) -> list[str]:
    """Lines of the report for one configuration and mode."""
    cfg, batch, tokens, _, new_tokens = CONFIGS[name]
    if mode == "products":
        seconds = statistics.median(r["products_s"] for r in ours)
        gflop = ours[0]["gflop"]
        rounds = ", ".join(f"{r['products_s']:.2f}" for r in ours)
        return [f"{name} products  the step's weight products alone (NumPy float32, {ours[0]['threads']} threads): "
                f"{seconds:.2f} s for {gflop:.0f} GFLOP, {gflop / seconds:.0f} GFLOP/s "
                f"(rounds: {rounds}): no NumPy step can take less"]
    if mode == "train":
        seconds = [_step_s(r) for r in ours]
        lines = [f"{name} train  minigpt step {statistics.median(seconds):7.2f} s "
                 f"(fwd {statistics.median(statistics.median(r['fwd_s']) for r in ours):.2f}, "
                 f"bwd {statistics.median(statistics.median(r['bwd_s']) for r in ours):.2f}, "
                 f"AdamW {statistics.median(statistics.median(r['opt_s']) for r in ours):.2f})  "
                 f"{ours[0]['parameters']:,} parameters, batch {batch} x {tokens}, peak {ours[0]['rss_peak_mib']:.0f} MiB"]
        if theirs:
            torch_seconds = [_step_s(r) for r in theirs]
            ratios = [a / b for a, b in zip(seconds, torch_seconds)]
            lines.append(f"{name} train  torch   step {statistics.median(torch_seconds):7.2f} s "
                         f"(fwd {statistics.median(statistics.median(r['fwd_s']) for r in theirs):.2f}, "
                         f"bwd {statistics.median(statistics.median(r['bwd_s']) for r in theirs):.2f}, "
                         f"AdamW {statistics.median(statistics.median(r['opt_s']) for r in theirs):.2f})  "
                         f"peak {theirs[0]['rss_peak_mib']:.0f} MiB")
            lines.append(f"{name} train  ratio minigpt/torch {statistics.median(ratios):.2f}x "
                         f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)}; target <= 0.70x)")
        return lines
    rates = [new_tokens / statistics.median(r["generate_s"]) for r in ours]
    lines = [f"{name} generate  minigpt {statistics.median(rates):7.1f} tokens/s (prompt + {new_tokens} new tokens, cached, greedy)"]
    if theirs:
        torch_rates = [new_tokens / statistics.median(r["generate_s"]) for r in theirs]
        ratios = [a / b for a, b in zip(rates, torch_rates)]
        lines.append(f"{name} generate  torch   {statistics.median(torch_rates):7.1f} tokens/s")
        lines.append(f"{name} generate  ratio minigpt/torch tokens per second {statistics.median(ratios):.2f}x "
                     f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)}; target >= 1.00x)")
    return lines


def main(argv=None) -> None:
    """Command line: see the module docstring and `--help`."""
    parser = argparse.ArgumentParser(prog="python scripts/bench.py qwen3", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["qwen3-100M"], choices=list(CONFIGS), help="default: qwen3-100M")
    parser.add_argument("--modes", nargs="+", default=["train", "generate"], choices=["train", "generate", "products"],
                        help="train, generate (both against PyTorch), products (the step's weight products alone in "
                             "NumPy: the floor of any NumPy step; see measure_products)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps first (default 1)")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps / generation rounds (default 3)")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the two sides this many times (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="BLAS, engine and torch threads (default 2)")
    parser.add_argument("--torch-python", default=None, help="a Python with torch 2.13 to run the book's qwen3.py; omit to skip")
    parser.add_argument("--book-pkg", default="/work/book/pkg", help="the book repository's pkg folder (llms_from_scratch/)")
    parser.add_argument("--worker", default=None, choices=["train", "generate", "products"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "products":
        print(json.dumps(measure_products(args.configs[0], args.steps, args.threads)), flush=True)
        return
    if args.worker == "train":
        print(json.dumps(measure_train(args.configs[0], args.warmup, args.steps, args.threads)), flush=True)
        return
    if args.worker == "generate":
        print(json.dumps(measure_generate(args.configs[0], args.steps, args.threads)), flush=True)
        return
    check_torch_python(parser, args.torch_python)
    if args.torch_python and not os.path.isfile(os.path.join(args.book_pkg, "llms_from_scratch", "qwen3.py")):
        parser.error(f"--book-pkg {args.book_pkg!r} has no llms_from_scratch/qwen3.py")
    print(f"Qwen3 benchmark: configs {args.configs}, modes {args.modes}, warmup {args.warmup}, steps {args.steps}, "
          f"rounds {args.rounds}, threads {args.threads}, torch {args.torch_python or 'not run'}; numpy {np.__version__}",
          flush=True)
    for name in args.configs:
        for mode in args.modes:
            ours, theirs = [], []
            for _ in range(args.rounds):
                ours.append(_ours(name, mode, args))
                if args.torch_python and mode != "products":
                    theirs.append(_theirs(name, mode, args))
            for line in report(name, mode, ours, theirs):
                print(line, flush=True)


if __name__ == "__main__":
    main()
