"""Benchmark: loading a training checkpoint with and without checksum verification.

Writes a `minigpt train` checkpoint of a GPT-2 size with random weights and a full AdamW state
(two moments per parameter: three times the model's bytes in all), then times
`load_checkpoint(path, verify=True)` and `verify=False` in alternating rounds (the file is in
the page cache after the first read, so both read from memory) and reports the medians and
their ratio. Verification computes a CRC-32 of every tensor (zlib).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench.py checkpoint --size gpt2-small --rounds 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np


def write_training_checkpoint(path: str, size: str) -> int:
    """A checkpoint of GPT-2 `size` (random weights, random AdamW moments); returns its bytes."""
    from minigpt.checkpoint import save_checkpoint
    from minigpt.model import GPTModel
    from minigpt.optim import AdamW, flatten_state_dict

    model = GPTModel(size, rng=0)
    optimizer = AdamW(model.parameters(), lr=1e-4)
    for parameter in model.parameters():  # one step creates the moment buffers
        parameter.grad = np.full_like(parameter.data, 1e-3)
    optimizer.step()
    save_checkpoint(path, model.state_dict(), flatten_state_dict(optimizer.state_dict()), {"trainer": {"step": 1}})
    return os.path.getsize(path)


def main(argv=None) -> None:
    """Command line: see the module docstring."""
    from minigpt.checkpoint import load_checkpoint

    parser = argparse.ArgumentParser(prog="python scripts/bench.py checkpoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="gpt2-small", choices=["gpt2-small", "gpt2-medium"],
                        help="GPT-2 size of the checkpoint (default gpt2-small, 124M parameters)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of each way; medians reported (default 5)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "checkpoint.safetensors")
        size = write_training_checkpoint(path, args.size)
        load_checkpoint(path, verify=False)  # warm the page cache
        times = {True: [], False: []}
        for round_index in range(args.rounds):
            for verify in ((True, False) if round_index % 2 == 0 else (False, True)):
                start = time.perf_counter()
                loaded = load_checkpoint(path, verify=verify)
                times[verify].append(time.perf_counter() - start)
                del loaded
    with_checks, without = statistics.median(times[True]), statistics.median(times[False])
    print(f"{args.size} training checkpoint, {size / 1e6:,.0f} MB (weights + AdamW moments), {args.rounds} rounds: "
          f"load with checksums {with_checks:.2f} s, without {without:.2f} s, ratio {with_checks / without:.2f}x "
          f"(+{(with_checks - without) * 1000:.0f} ms)")
    print("rounds with:    " + " ".join(f"{t:.2f}" for t in times[True]))
    print("rounds without: " + " ".join(f"{t:.2f}" for t in times[False]))


if __name__ == "__main__":
    main()
