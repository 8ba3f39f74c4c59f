"""The book's chapter-6 fine-tuning step in plain eager PyTorch, timed: a reference for `python scripts/bench.py finetune`.

Run only under a Python with torch (never imported by minigpt):

    /tmp/torchref/bin/python scripts/benchmarks/torch_reference/classify.py --trainable last-block

It builds the book's GPT (`gpt.py`, gpt2-small's shape with the qkv bias of OpenAI's weights, dropout
0 as the chapter's BASE_CONFIG), then does what section 6.5 does: every parameter frozen, `out_head`
replaced by `torch.nn.Linear(768, 2)`, the last transformer block and the final LayerNorm unfrozen;
`torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.1)` as listing 6.10 (all parameters
passed; PyTorch keeps state only for those that get a gradient). One step is the book's
`calc_loss_batch` (the logits of the last position, cross-entropy), `backward`, `step`, on random
batches of 8 x 120 token ids (the chapter's longest training text) and random 0/1 labels.

Prints one JSON line: milliseconds of forward, backward and optimizer per timed step, the CPU time
other processes took during each step, the resident memory before the steps and its peak during
them (VmHWM, reset just before the first step).
"""

import argparse
import ctypes
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt import build  # noqa: E402  (the book's model, next to this file)


def status_mib(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM), MiB."""
    with open("/proc/self/status", encoding="ascii") as file:
        for line in file:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def busy_seconds() -> float:
    """CPU time the whole machine has spent busy since boot (/proc/stat), seconds."""
    with open("/proc/stat", encoding="ascii") as file:
        fields = [int(value) for value in file.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    times = os.times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainable", choices=["last-block", "all"], default="last-block")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=120)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = build("gpt2-small", drop_rate=0.0, qkv_bias=True)
    for param in model.parameters():  # section 6.5: freeze everything ...
        param.requires_grad = args.trainable == "all"
    torch.manual_seed(123)
    model.out_head = torch.nn.Linear(in_features=768, out_features=2)  # ... a new head (trainable) ...
    for param in model.trf_blocks[-1].parameters():  # ... and the last block and final norm
        param.requires_grad = True
    for param in model.final_norm.parameters():
        param.requires_grad = True
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.1)
    model.train()

    generator = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 50257, (args.warmup + args.steps, args.batch, args.tokens), generator=generator)
    labels = torch.randint(0, 2, (args.warmup + args.steps, args.batch), generator=generator)
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # free memory goes back to the system before the baseline
    rss_before = status_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as file:
        file.write("5")  # reset the peak resident size (VmHWM) to the current one
    forward, backward, update, other = [], [], [], []
    for step in range(args.warmup + args.steps):
        busy, own = busy_seconds(), own_seconds()
        start = time.perf_counter()
        optimizer.zero_grad()
        logits = model(inputs[step])[:, -1, :]  # the book's calc_loss_batch: the last position
        loss = torch.nn.functional.cross_entropy(logits, labels[step])
        after_forward = time.perf_counter()
        loss.backward()
        after_backward = time.perf_counter()
        optimizer.step()
        end = time.perf_counter()
        if step >= args.warmup:
            forward.append(after_forward - start)
            backward.append(after_backward - after_forward)
            update.append(end - after_backward)
            other.append(round((busy_seconds() - busy) - (own_seconds() - own), 3))
    print(json.dumps({"side": "torch", "trainable": args.trainable, "fwd_s": forward, "bwd_s": backward, "opt_s": update,
                      "other_cpu_s": other, "rss_before_mib": rss_before, "rss_peak_mib": status_mib("VmHWM"),
                      "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)


if __name__ == "__main__":
    main()
