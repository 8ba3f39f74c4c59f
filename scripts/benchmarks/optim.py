"""Benchmark: milliseconds per AdamW step on GPT-2-sized float32 parameters.

Compares three ways of writing the same update (torch.optim.AdamW's algorithm):

- `naive`: a Python loop over parameters of whole-array NumPy expressions, the way the update is
  usually first written; every expression allocates a full-size temporary.
- `flat`: `minigpt.optim.AdamW` with one chunk per parameter (in place, no temporaries, but each
  pass streams the whole parameter through main memory).
- `chunked`: `minigpt.optim.AdamW` as shipped: in place, in chunks that stay in the L2 cache.

Parameters are plain arrays with the shapes of the chosen model (no model is built). Run:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench.py optim

Reference: PyTorch's default torch.optim.AdamW took about 0.8 s per step for the book's 124M
model on the machine minigpt was developed on.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from minigpt.optim import CHUNK_SIZE, AdamW


class _Parameter:
    """A stand-in for `minigpt.nn.Parameter`: an array in `.data`, its gradient in `.grad`."""

    def __init__(self, data: np.ndarray):
        self.data = data
        self.grad = None


def gpt_shapes(preset: str) -> list[tuple[int, ...]]:
    """Return the parameter shapes of a GPT preset, in the book's module order.

    `gpt2-small`: OpenAI's GPT-2 124M (context 1024, qkv biases, output head tied to the token
    embedding: 124,439,808 parameters). `book-124m`: the book's GPT_CONFIG_124M as trained in
    chapter 5 (context 256, no qkv bias, separate `out_head`: 162,419,712 parameters).
    """
    vocab_size, emb_dim, n_layers = 50257, 768, 12
    context_length, qkv_bias, tied = {"gpt2-small": (1024, True, True), "book-124m": (256, False, False)}[preset]
    shapes = [(vocab_size, emb_dim), (context_length, emb_dim)]  # tok_emb, pos_emb
    for _ in range(n_layers):
        for _ in range(3):  # W_query, W_key, W_value: Linear weight (out, in) [+ bias]
            shapes.append((emb_dim, emb_dim))
            if qkv_bias:
                shapes.append((emb_dim,))
        shapes += [(emb_dim, emb_dim), (emb_dim,)]  # out_proj
        shapes += [(4 * emb_dim, emb_dim), (4 * emb_dim,), (emb_dim, 4 * emb_dim), (emb_dim,)]  # ff
        shapes += [(emb_dim,)] * 4  # norm1.scale, norm1.shift, norm2.scale, norm2.shift
    shapes += [(emb_dim,), (emb_dim,)]  # final_norm
    if not tied:
        shapes.append((vocab_size, emb_dim))  # out_head (no bias)
    return shapes


def naive_adamw_step(params, exp_avgs, exp_avg_sqs, step, lr, betas, eps, weight_decay) -> None:
    """One AdamW step written as whole-array expressions per parameter (the baseline)."""
    beta1, beta2 = betas
    for p, m, v in zip(params, exp_avgs, exp_avg_sqs):
        g = p.grad
        p.data *= 1 - lr * weight_decay
        m[...] = beta1 * m + (1 - beta1) * g
        v[...] = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1**step)
        v_hat = v / (1 - beta2**step)
        p.data -= lr * m_hat / (np.sqrt(v_hat) + eps)


def _make_parameters(shapes, seed: int) -> list[_Parameter]:
    rng = np.random.default_rng(seed)
    params = []
    for shape in shapes:
        parameter = _Parameter(rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02))
        parameter.grad = rng.standard_normal(shape, dtype=np.float32) * np.float32(1e-3)
        params.append(parameter)
    return params


def _time(function, repeats: int) -> float:
    """Return the best wall time of `repeats` calls, in milliseconds (after one warm-up call)."""
    function()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def main(argv=None) -> dict:
    """Time the AdamW variants and print milliseconds per step; return the figures as a dict."""
    parser = argparse.ArgumentParser(prog="python scripts/bench.py optim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=["gpt2-small", "book-124m"], default="gpt2-small",
                        help="parameter shapes to use (default: gpt2-small, 124M parameters)")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per variant; the best is reported")
    parser.add_argument("--chunk-size", type=int, default=CHUNK_SIZE,
                        help=f"elements per chunk of the chunked update (default {CHUNK_SIZE})")
    parser.add_argument("--variants", nargs="+", choices=["naive", "flat", "chunked"],
                        default=["naive", "flat", "chunked"], help="which implementations to time")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random parameters and gradients")
    args = parser.parse_args(argv)

    shapes = gpt_shapes(args.preset)
    count = sum(math.prod(shape) for shape in shapes)
    print(f"AdamW step, {args.preset}: {len(shapes)} parameters, {count:,} float32 values; "
          f"best of {args.repeats}, seed {args.seed}")
    hyper = {"lr": 4e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.1}
    results = {}
    for variant in args.variants:
        params = _make_parameters(shapes, args.seed)
        if variant == "naive":
            exp_avgs = [np.zeros_like(p.data) for p in params]
            exp_avg_sqs = [np.zeros_like(p.data) for p in params]
            counter = [0]

            def run():
                counter[0] += 1
                naive_adamw_step(params, exp_avgs, exp_avg_sqs, counter[0], **hyper)
        else:
            chunk_size = args.chunk_size if variant == "chunked" else max(math.prod(s) for s in shapes)
            optimizer = AdamW(params, chunk_size=chunk_size, **hyper)
            run = optimizer.step
        results[variant] = _time(run, args.repeats)
        print(f"  {variant:8s} {results[variant]:9.1f} ms/step")
        del params
    if "naive" in results:
        for variant in results:
            if variant != "naive":
                print(f"  speed-up of {variant} over naive: {results['naive'] / results[variant]:.2f}x")
    return results


if __name__ == "__main__":
    main()
