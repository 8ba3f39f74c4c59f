"""Time training steps of the book's GPT in eager PyTorch: the reference of `python scripts/bench.py model`.

Runs under a Python with torch (never imported by minigpt): builds `gpt.build(CONFIG)` (dropout
`--dropout`, 0 by default; float32), then runs warm-up and timed steps on random token batches: `zero_grad`, forward +
cross-entropy, `backward()`, `torch.optim.AdamW(lr=4e-4, weight_decay=0.1)` (the book's
chapter-5 settings). Prints one JSON line with the seconds of each phase per timed step (`fwd_s`,
`bwd_s`, `opt_s`), the CPU seconds other processes took during each step (`other_cpu_s`, from
/proc/stat), the first and last loss and the peak resident memory (`rss_peak_mib`): the record
`scripts/benchmarks/model.py` reads.

    /tmp/torchref/bin/python scripts/benchmarks/torch_reference/train_step.py --config char --batch 12 --tokens 64
"""

import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt import CONFIGS, build  # noqa: E402  (this folder is not a package under the torch Python)


def busy_seconds() -> float:
    """CPU time the whole machine has spent busy since boot (all CPUs, /proc/stat), seconds."""
    with open("/proc/stat", encoding="ascii") as file:
        fields = [int(value) for value in file.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def measure(config: str, batch: int, tokens: int, warmup: int, steps: int, adamw: str, seed: int = 0,
            dropout: float = 0.0) -> dict:
    """Seconds per phase of `steps` timed training steps after `warmup` untimed ones."""
    model = build(config, drop_rate=dropout, seed=seed)
    model.train()
    options = {"foreach": dict(foreach=True), "fused": dict(fused=True)}.get(adamw, {})
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1, **options)
    vocab_size = CONFIGS[config][0]
    generator = torch.Generator().manual_seed(seed)
    data = torch.randint(0, vocab_size, (warmup + steps, batch, tokens + 1), generator=generator)
    forward, backward, update, other_cpu, losses = [], [], [], [], []
    for step in range(warmup + steps):
        inputs, targets = data[step, :, :-1], data[step, :, 1:]
        busy, own = busy_seconds(), own_cpu_seconds()
        start = time.perf_counter()
        optimizer.zero_grad()
        logits = model(inputs)  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        after_forward = time.perf_counter()
        loss.backward()
        after_backward = time.perf_counter()
        optimizer.step()
        end = time.perf_counter()
        losses.append(loss.item())
        if step >= warmup:
            other_cpu.append(round((busy_seconds() - busy) - (own_cpu_seconds() - own), 3))
            forward.append(after_forward - start)
            backward.append(after_backward - after_forward)
            update.append(end - after_backward)
    return {
        "config": config, "batch": batch, "tokens": tokens, "adamw": adamw, "dropout": dropout, "torch": torch.__version__,
        "threads": torch.get_num_threads(), "parameters": sum(p.numel() for p in model.parameters()),
        "fwd_s": forward, "bwd_s": backward, "opt_s": update, "other_cpu_s": other_cpu,
        "loss_first": losses[0], "loss_last": losses[-1],
        "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, choices=list(CONFIGS), help="a configuration of gpt.CONFIGS")
    parser.add_argument("--batch", type=int, required=True, help="sequences per batch")
    parser.add_argument("--tokens", type=int, required=True, help="tokens per sequence (at most the config's context)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    parser.add_argument("--threads", type=int, default=2, help="torch's intra-op threads (default 2)")
    parser.add_argument("--dropout", type=float, default=0.0, help="the model's drop_rate (default 0)")
    parser.add_argument("--adamw", default="default", choices=["default", "foreach", "fused"],
                        help="torch.optim.AdamW's implementation (default: its own choice)")
    args = parser.parse_args(argv)
    if not 1 <= args.tokens <= CONFIGS[args.config][1]:
        parser.error(f"--tokens must be between 1 and the context length {CONFIGS[args.config][1]}, got {args.tokens}")
    torch.set_num_threads(args.threads)
    print(json.dumps(measure(args.config, args.batch, args.tokens, args.warmup, args.steps, args.adamw,
                               dropout=args.dropout)), flush=True)


if __name__ == "__main__":
    main()
