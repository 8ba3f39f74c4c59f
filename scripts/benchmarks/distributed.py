"""Benchmark: data-parallel training over MPI, 1 process x 2 threads against 2 processes x 1 thread.

Both sides run `Trainer.train_step` on the same global batch (2 micro-batches of the
configuration's batch size): one process accumulating both with 2 threads, or 2 MPI ranks
(`mpirun -n 2`, loopback) with one micro-batch and one thread each and one Allreduce of the
gradients. Reported per configuration: the median seconds per global step, and on the MPI side
the share of the step spent in `World.allreduce_gradients` (which includes waiting for the slower
rank) and the time of the same Allreduce alone after a barrier (the pure communication cost),
with one flat buffer and with one call per parameter (what buckets of one tensor would cost).
`--one-thread` adds 1 process x 1 thread: what one core does with the same 2 micro-batches.
`--bucket-cap-mb MB` adds 2 processes x 1 thread sending the gradients in buckets of at most MB
megabytes started during backward (`minigpt train --bucket-cap-mb`), against the one Allreduce
after backward; "in allreduce" is then the time from the end of backward to the last bucket's end.

Configurations: those of `benchmarks.model` (book-124M: the book's GPT_CONFIG_124M,
context 256, batch 2 per micro-batch; char: 128 wide, 4 layers, batch 12 x 64).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench.py distributed --rounds 2

Needs the `mpi` extra (`pip install -e ".[mpi]"`). Rounds alternate the two sides; shared
machines are noisy, so compare the medians of one run, not absolute times across runs.
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

from benchmarks.model import CONFIGS, _child_env, _last_json_line


def _time_allreduce(world, parameters, repeats: int = 3) -> dict:
    """Seconds of one flat Allreduce of all gradients, and of one Allreduce per parameter, after a barrier."""
    from mpi4py import MPI

    flat, per_parameter = [], []
    grads = [parameter.grad for parameter in parameters]
    buffer = np.concatenate([grad.reshape(-1) for grad in grads])
    for _ in range(repeats):
        world.comm.Barrier()
        start = time.perf_counter()
        world.comm.Allreduce(MPI.IN_PLACE, buffer)
        flat.append(time.perf_counter() - start)
        world.comm.Barrier()
        start = time.perf_counter()
        for grad in grads:
            world.comm.Allreduce(MPI.IN_PLACE, grad)
        per_parameter.append(time.perf_counter() - start)
    return {"allreduce_flat_s": statistics.median(flat), "allreduce_per_parameter_s": statistics.median(per_parameter),
            "gradient_bytes": int(buffer.nbytes), "tensors": len(grads)}


def measure(name: str, warmup: int, steps: int, threads: int, bucket_cap_mb: float | None = None) -> dict | None:
    """Time `Trainer.train_step` in this process (one rank of an MPI run, or a single process)."""
    from threadpoolctl import threadpool_limits

    from autograd.memory import keep_freed_memory
    from autograd.parallel import set_num_threads, set_openblas_thread_timeout
    from minigpt.data import DataLoader, GPTDataset
    from minigpt.distributed import init
    from minigpt.model import GPTModel
    from minigpt.optim import AdamW
    from minigpt.trainer import Trainer, TrainingConfig

    keep_freed_memory()  # as `minigpt train` does
    set_openblas_thread_timeout()
    set_num_threads(threads)
    threadpool_limits(limits=threads, user_api="blas")
    world = init()
    cfg, batch_size, num_tokens, _ = CONFIGS[name]
    global_micro_batches = 2
    tokens = np.random.default_rng(0).integers(0, cfg["vocab_size"], (warmup + steps + 1) * global_micro_batches * batch_size * num_tokens + 1)
    loader = DataLoader(GPTDataset(tokens, None, num_tokens, num_tokens), batch_size=batch_size, shuffle=False, drop_last=True)
    model = GPTModel(cfg, rng=0)
    optimizer = AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    config = TrainingConfig(max_steps=warmup + steps, grad_accum_steps=global_micro_batches // world.size, eval_every=10**6)
    trainer = Trainer(model, optimizer, loader, None, config, world=world, bucket_cap_mb=bucket_cap_mb)

    in_allreduce = []

    def timed(function):
        def timed_function(*args):
            start = time.perf_counter()
            result = function(*args)
            in_allreduce.append(time.perf_counter() - start)
            return result
        return timed_function

    if trainer.gradient_buckets is not None:
        trainer.gradient_buckets.finish = timed(trainer.gradient_buckets.finish)
    else:
        world.allreduce_gradients = timed(world.allreduce_gradients)
    step_seconds = []
    for step in range(warmup + steps):
        if world.size > 1:
            world.comm.Barrier()  # every step starts together, as the Allreduce of the last one left them
        start = time.perf_counter()
        trainer.train_step()
        step_seconds.append(time.perf_counter() - start)
    record = {"config": name, "ranks": world.size, "threads": threads, "step_s": step_seconds[warmup:],
              "allreduce_s": in_allreduce[warmup:], "bucket_cap_mb": bucket_cap_mb,
              "buckets": None if trainer.gradient_buckets is None else len(trainer.gradient_buckets.buckets)}
    if world.size > 1:
        trainer.model.zero_grad()
        for parameter in model.parameters():  # gradients to send (their values do not matter)
            parameter.grad = np.ones_like(parameter.data)
        record.update(_time_allreduce(world, list(model.parameters())))
    return record if world.is_main else None


def _run_side(name: str, ranks: int, args, threads: int | None = None, bucket_cap_mb: float | None = None) -> dict:
    """One measurement in fresh processes: `mpirun -n ranks` with 1 thread each, or one process with 2."""
    threads = 2 // ranks if threads is None else threads
    command = [sys.executable, "-m", "benchmarks.distributed", "--worker", name,
               "--warmup", str(args.warmup), "--steps", str(args.steps), "--threads", str(threads)]
    if bucket_cap_mb is not None:
        command += ["--bucket-cap-mb", str(bucket_cap_mb)]
    if ranks > 1:
        mpirun = os.path.join(os.path.dirname(sys.executable), "mpirun")
        command = [mpirun if os.path.isfile(mpirun) else "mpirun", "-n", str(ranks), *command]
    done = subprocess.run(command, capture_output=True, text=True, env=_child_env(threads), check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return _last_json_line(done.stdout, command)


def summarize(name: str, single: list[dict], ranks: list[dict], one_thread: list[dict], bucketed: list[dict]) -> list[str]:
    one = statistics.median(s for record in single for s in record["step_s"])
    two = statistics.median(s for record in ranks for s in record["step_s"])
    waiting = statistics.median(s for record in ranks for s in record["allreduce_s"])
    flat = statistics.median(record["allreduce_flat_s"] for record in ranks)
    per_parameter = statistics.median(record["allreduce_per_parameter_s"] for record in ranks)
    megabytes = ranks[0]["gradient_bytes"] / 1e6
    return [
        f"{name}: global step of 2 micro-batches, median over {len(single)} round(s)",
        f"  1 process x 2 threads : {one * 1e3:9.1f} ms",
        f"  2 processes x 1 thread: {two * 1e3:9.1f} ms   (speed-up {one / two:.2f}x)",
        *([f"  1 process x 1 thread  : {statistics.median(s for record in one_thread for s in record['step_s']) * 1e3:9.1f} ms"]
          if one_thread else []),
        f"    in allreduce_gradients (copy + Allreduce + waiting for the other rank): {waiting * 1e3:.1f} ms = {100 * waiting / two:.1f} % of the step",
        f"    Allreduce alone after a barrier, {megabytes:.1f} MB: one flat buffer {flat * 1e3:.1f} ms "
        f"({megabytes / flat / 1e3:.2f} GB/s algorithm bandwidth); one call per tensor ({ranks[0]['tensors']}) {per_parameter * 1e3:.1f} ms",
        *(_bucketed_lines(bucketed, two) if bucketed else []),
    ]


def _bucketed_lines(bucketed: list[dict], flat_step: float) -> list[str]:
    """The bucketed side against the one-Allreduce side (2 processes x 1 thread each)."""
    step = statistics.median(s for record in bucketed for s in record["step_s"])
    after_backward = statistics.median(s for record in bucketed for s in record["allreduce_s"])
    return [
        f"  2 processes x 1 thread, {bucketed[0]['buckets']} buckets of <= {bucketed[0]['bucket_cap_mb']:g} MB during backward: "
        f"{step * 1e3:9.1f} ms   ({flat_step / step:.3f}x the one-Allreduce step's speed)",
        f"    from the end of backward to the last bucket's end: {after_backward * 1e3:.1f} ms = {100 * after_backward / step:.1f} % of the step",
    ]


def main(argv=None) -> None:
    """Command line: `python scripts/bench.py distributed [--configs ...] [--rounds R] [--steps S]`."""
    parser = argparse.ArgumentParser(prog="python scripts/bench.py distributed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=["char", "book-124M"], choices=list(CONFIGS), help="configurations to measure")
    parser.add_argument("--warmup", type=int, default=1, help="untimed global steps first (default 1)")
    parser.add_argument("--steps", type=int, default=3, help="timed global steps per round (default 3)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of the two sides (default 2)")
    parser.add_argument("--one-thread", action="store_true", help="also measure 1 process x 1 thread (the same 2 micro-batches on one core)")
    parser.add_argument("--bucket-cap-mb", type=float, default=None, metavar="MB",
                        help="also measure 2 processes x 1 thread with gradient buckets of at most MB megabytes (PyTorch DDP: 25)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        record = measure(args.worker, args.warmup, args.steps, args.threads, args.bucket_cap_mb)
        if record is not None:
            print(json.dumps(record), flush=True)
        return
    print(f"rounds {args.rounds} x {args.steps} timed steps (after {args.warmup} warm-up); loopback MPI (mpich)", flush=True)
    for name in args.configs:
        single, ranks, one_thread, bucketed = [], [], [], []
        for _ in range(args.rounds):
            single.append(_run_side(name, 1, args))
            ranks.append(_run_side(name, 2, args))
            if args.one_thread:
                one_thread.append(_run_side(name, 1, args, threads=1))
            if args.bucket_cap_mb is not None:
                bucketed.append(_run_side(name, 2, args, bucket_cap_mb=args.bucket_cap_mb))
            print(f"  {name} round: 1x2 {statistics.median(single[-1]['step_s']) * 1e3:.1f} ms, "
                  f"2x1 {statistics.median(ranks[-1]['step_s']) * 1e3:.1f} ms"
                  + (f", 1x1 {statistics.median(one_thread[-1]['step_s']) * 1e3:.1f} ms" if one_thread else "")
                  + (f", 2x1 buckets {statistics.median(bucketed[-1]['step_s']) * 1e3:.1f} ms" if bucketed else ""), flush=True)
        print("\n".join(summarize(name, single, ranks, one_thread, bucketed)), flush=True)


if __name__ == "__main__":
    main()
