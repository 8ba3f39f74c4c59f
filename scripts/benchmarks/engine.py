"""Benchmark of the autograd engine itself: graph overhead and large matrix products.

Two measurements:

(a) overhead: forward + backward of a chain of 10,000 small ops (alternating add, mul, tanh on a
    4 x 4 float32 tensor); reported in microseconds per op. Here the arrays are tiny, so the
    figure is the Python cost of recording an op and walking the graph.
(b) large matmuls: forward + backward of a stack of float32 matrix products
    x -> x @ W1 -> ... -> x @ WL, against the same products written by hand in NumPy with no
    engine (da = dout @ W^T, dW = x^T @ dout). The ratio engine / NumPy shows what the engine
    adds where the real work is BLAS; the target is at most 1.10.

Run (OPENBLAS variables unset, as for every benchmark on this machine):
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench.py engine
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import autograd


def _median_seconds(function, repeats: int) -> float:
    function()  # warm-up: allocations, BLAS thread start
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def chain_overhead(num_ops: int = 10_000, repeats: int = 5) -> float:
    """Seconds per op for forward + backward of a chain of `num_ops` small elementwise ops."""
    rng = np.random.default_rng(0)
    start_value = rng.standard_normal((4, 4)).astype(np.float32)

    def run():
        x = autograd.tensor(start_value, requires_grad=True)
        y = x
        for i in range(num_ops // 3):
            y = y + 0.5
            y = y * 0.9
            y = y.tanh()
        y.sum().backward()

    return _median_seconds(run, repeats) / num_ops


def matmul_stack(size: int, depth: int, batch: int, repeats: int = 5) -> tuple[float, float]:
    """Seconds for forward + backward of `depth` (batch, size) @ (size, size) products: engine, NumPy."""
    rng = np.random.default_rng(0)
    x_value = rng.standard_normal((batch, size)).astype(np.float32)
    weights = [(rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32) for _ in range(depth)]
    upstream = rng.standard_normal((batch, size)).astype(np.float32)

    parameters = [autograd.tensor(w, requires_grad=True) for w in weights]

    def engine():
        for p in parameters:
            p.grad = None
        h = autograd.tensor(x_value, requires_grad=True)
        for p in parameters:
            h = h @ p
        h.backward(upstream)

    def by_hand():
        activations = [x_value]
        for w in weights:
            activations.append(activations[-1] @ w)
        dout = upstream.copy()
        grads = []
        for w, a in zip(reversed(weights), reversed(activations[:-1])):
            grads.append(a.T @ dout)  # dW = x^T dout
            dout = dout @ w.T  # dx = dout W^T
        return grads, dout

    engine_time = _median_seconds(engine, repeats)
    numpy_time = _median_seconds(by_hand, repeats)
    return engine_time, numpy_time


def main(argv=None) -> None:
    """Print the engine benchmark (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python scripts/bench.py engine", description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=10_000, help="length of the small-op chain (ops)")
    parser.add_argument("--size", type=int, default=2048, help="matrix side for the matmul stack (elements)")
    parser.add_argument("--batch", type=int, default=2048, help="rows of the activations in the matmul stack")
    parser.add_argument("--depth", type=int, default=8, help="number of matrix products in the stack")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions; the median is reported")
    args = parser.parse_args(argv)

    seconds_per_op = chain_overhead(args.ops, args.repeats)
    print(f"(a) chain of {args.ops} small ops, forward+backward: {seconds_per_op * 1e6:.1f} us per op")
    engine_time, numpy_time = matmul_stack(args.size, args.depth, args.batch, args.repeats)
    flops = 3 * 2 * args.batch * args.size * args.size * args.depth  # forward + two backward products
    print(
        f"(b) {args.depth} matmuls ({args.batch}x{args.size} @ {args.size}x{args.size}) float32, forward+backward: "
        f"engine {engine_time * 1e3:.1f} ms, NumPy by hand {numpy_time * 1e3:.1f} ms, "
        f"ratio {engine_time / numpy_time:.3f} (target <= 1.10); "
        f"{flops / engine_time / 1e9:.0f} GFLOP/s through the engine"
    )


if __name__ == "__main__":
    main()
