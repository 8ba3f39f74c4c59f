"""Benchmark: loading a GPT-2 checkpoint, time and peak memory (book ch. 5.5).

Writes a synthetic checkpoint of a real GPT-2 size in the hub's layout (bare `h.N...` names, the
`attn.bias` mask buffers, a config.json; random float32 values), then loads it with
`GPTModel.from_pretrained` in a fresh process and reports the load time and the peak resident
memory the load added, as a multiple of the model's float32 size. Loading reads one tensor at a
time into the model's own arrays, so the target is at most about 1.2x.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench.py load --size gpt2-small
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

from benchmarks import child_python_path



def write_synthetic_checkpoint(directory: str, size: str, seed: int = 0) -> int:
    """Write config.json + model.safetensors of GPT-2 `size` in the hub's layout; return the parameter count."""
    from minigpt.model import get_config
    from minigpt.pretrained import config_to_hf, gpt2_layout
    from minigpt.checkpoint import atomic_save_safetensors

    cfg = get_config(size)
    rng = np.random.default_rng(seed)
    tensors, count = {}, 0
    for name, (shape, _) in gpt2_layout(cfg).items():
        tensors[name] = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
        count += int(np.prod(shape))
    for n in range(cfg.n_layers):  # the hub file's causal-mask buffers (not parameters)
        tensors[f"h.{n}.attn.bias"] = np.tril(np.ones((cfg.context_length, cfg.context_length), np.float32))[None, None]
    atomic_save_safetensors(os.path.join(directory, "model.safetensors"), tensors, {"format": "pt"})
    with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as file:
        json.dump(config_to_hf(cfg), file)
    return count


def _rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as file:
        for line in file:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _worker(directory: str) -> dict:
    import minigpt.pretrained  # noqa: F401  (imports before the baseline, so they are not counted)
    from minigpt.model import GPTModel

    baseline = _rss_mib()
    start = time.perf_counter()
    model = GPTModel.from_pretrained(directory)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model_mib = sum(p.data.nbytes for p in model.parameters()) / 2**20
    return {"seconds": seconds, "baseline_mib": baseline, "peak_mib": peak, "model_mib": model_mib, "after_mib": _rss_mib()}


def main(argv=None) -> None:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(prog="python scripts/bench.py load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="gpt2-small", choices=["gpt2-small", "gpt2-medium", "gpt2-large", "gpt2-xl"],
                        help="which GPT-2 size to imitate (default gpt2-small, 124M parameters)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker)))
        return
    with tempfile.TemporaryDirectory() as directory:
        count = write_synthetic_checkpoint(directory, args.size)
        env = dict(os.environ, PYTHONPATH=child_python_path(os.environ))
        done = subprocess.run([sys.executable, "-m", "benchmarks.load", "--worker", directory],
                              capture_output=True, text=True, env=env, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
    added = result["peak_mib"] - result["baseline_mib"]
    print(f"{args.size}: {count:,} parameters ({result['model_mib']:.0f} MiB float32); load {result['seconds']:.2f} s; "
          f"peak memory added by the load {added:.0f} MiB = {added / result['model_mib']:.2f}x the model "
          f"(process peak {result['peak_mib']:.0f} MiB, before {result['baseline_mib']:.0f} MiB, after {result['after_mib']:.0f} MiB)")


if __name__ == "__main__":
    main()
