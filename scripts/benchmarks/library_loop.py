"""Benchmark: a reader's own training loop, with and without the process settings.

The book's readers write their own loop (`train_model_simple`: zero_grad, `calc_loss_batch`,
backward, step) instead of running `minigpt train`. Such a script gets the two process settings
(`autograd.memory.keep_freed_memory`, `autograd.parallel.set_openblas_thread_timeout`) from its
optimizer's construction (`autograd.memory.apply_process_settings`, called by
`minigpt.optim.Optimizer.__init__`), unless MINIGPT_PROCESS_SETTINGS=0.
This benchmark runs that plain loop in fresh processes, alternating the opt-out ("without", the
behaviour before issue 10) and the default ("with"), and reports the median step time of each
round and the ratio, side by side.

Run (the OPENBLAS_* variables some machines set pick a slower kernel; subprocesses drop them):

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench.py library_loop --config book-124M

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

from benchmarks import child_python_path
from benchmarks.model import _NOISY_ENV, CONFIGS

VARIANTS = {"without": "0", "with": "1"}  # name -> MINIGPT_PROCESS_SETTINGS


def plain_loop(config: str, warmup: int, steps: int) -> dict:
    """Run the book's loop on random tokens in this process; seconds per step after the warm-up."""
    import numpy as np

    from autograd import memory
    from minigpt.model import GPTModel
    from minigpt.optim import AdamW
    from minigpt.train import calc_loss_batch

    cfg, batch_size, num_tokens, _ = CONFIGS[config]
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, cfg["vocab_size"], size=(batch_size, num_tokens + 1))
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    model = GPTModel(cfg, rng=0)
    optimizer = AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)  # book ch. 5.2
    times = []
    for _ in range(warmup + steps):
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = calc_loss_batch(inputs, targets, model)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return {"step_seconds": statistics.median(times[warmup:]), "settings_pending": memory.settings_pending}


def run_variant(variant: str, config: str, warmup: int, steps: int) -> dict:
    """`plain_loop` in a fresh process with MINIGPT_PROCESS_SETTINGS set for `variant`."""
    environment = {key: value for key, value in os.environ.items() if key not in _NOISY_ENV}
    environment["MINIGPT_PROCESS_SETTINGS"] = VARIANTS[variant]
    environment["PYTHONPATH"] = child_python_path(environment)
    code = (f"import json; from benchmarks.library_loop import plain_loop; "
            f"print(json.dumps(plain_loop({config!r}, {warmup}, {steps})))")
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=environment).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    """Alternate the two variants for `--rounds` rounds; print and return the step times."""
    parser = argparse.ArgumentParser(prog="python scripts/bench.py library_loop", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="book-124M", choices=list(CONFIGS), help="model and batch (see benchmarks.model)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each running both variants in fresh processes")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per process")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per process (median reported)")
    args = parser.parse_args(argv)
    print(f"plain training loop (zero_grad, calc_loss_batch, backward, AdamW step), {args.config}, "
          f"{args.rounds} rounds of {args.warmup} + {args.steps} steps per process")
    print(f"{'round':>5} {'without s/step':>15} {'with s/step':>12} {'with / without':>15}")
    rounds = []
    for number in range(1, args.rounds + 1):
        order = list(VARIANTS) if number % 2 else list(reversed(VARIANTS))  # alternate which runs first
        result = {variant: run_variant(variant, args.config, args.warmup, args.steps) for variant in order}
        assert not result["with"]["settings_pending"]  # building the optimizer applied them
        rounds.append({variant: result[variant]["step_seconds"] for variant in VARIANTS})
        row = rounds[-1]
        print(f"{number:>5} {row['without']:>15.3f} {row['with']:>12.3f} {row['with'] / row['without']:>15.3f}", flush=True)
    ratio = statistics.median(row["with"] / row["without"] for row in rounds)
    print(f"median step: without {statistics.median(row['without'] for row in rounds):.3f} s, "
          f"with {statistics.median(row['with'] for row in rounds):.3f} s; median ratio with / without {ratio:.3f}")
    return {"rounds": rounds, "median_ratio": ratio}


if __name__ == "__main__":
    main()
