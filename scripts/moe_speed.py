"""Time MoEFeedForward's forward + backward: minigpt's, and the book's PyTorch class side by side.

    python scripts/moe_speed.py --torch-python /tmp/ref-tok/bin/python --book /work/book

runs minigpt's layer here and the book's `ch04/07_moe` `MoEFeedForward` in a subprocess with the
given interpreter (torch 2.13), alternately, on the same shapes (float32, 2 threads each), and
prints the median times and their ratio. Shapes: a small Qwen3-MoE-like layer by default.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, statistics, sys, time
import torch
torch.set_num_threads(int(sys.argv[3]))
sys.path.insert(0, sys.argv[1] + "/ch04/07_moe")
from gpt_with_kv_moe import MoEFeedForward
cfg = json.loads(sys.argv[2])
torch.manual_seed(0)
layer = MoEFeedForward(cfg)
x = torch.randn(cfg["batch"], cfg["tokens"], cfg["emb_dim"], requires_grad=True)
times = []
for _ in range(cfg["repeats"] + 1):
    start = time.perf_counter()
    layer(x).sum().backward()
    times.append(time.perf_counter() - start)
print(statistics.median(times[1:]))
"""


def time_minigpt(cfg: dict) -> float:
    import autograd as torch
    from minigpt.nn import MoEFeedForward
    layer = MoEFeedForward(cfg, rng=0)
    x = torch.randn(cfg["batch"], cfg["tokens"], cfg["emb_dim"], requires_grad=True)
    times = []
    for _ in range(cfg["repeats"] + 1):
        start = time.perf_counter()
        layer(x).sum().backward()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", required=True, help="a Python with torch 2.13 (and tiktoken, which the book's module imports)")
    parser.add_argument("--book", default="/work/book", help="the book's repository")
    parser.add_argument("--threads", type=int, default=2, help="threads for both sides")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians are reported)")
    parser.add_argument("--emb-dim", type=int, default=512)
    parser.add_argument("--hidden", type=int, default=256, help="each expert's hidden size")
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args(argv)
    cfg = {"emb_dim": args.emb_dim, "hidden_dim": args.hidden, "num_experts": args.experts,
           "num_experts_per_tok": args.top_k, "batch": args.batch, "tokens": args.tokens, "repeats": 5}
    from autograd.parallel import set_num_threads
    set_num_threads(args.threads)
    print(f"config {cfg}, {args.threads} threads")
    ours, theirs = [], []
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    for _ in range(args.rounds):
        ours.append(time_minigpt(cfg))
        result = subprocess.run([args.torch_python, "-c", CHILD, args.book, json.dumps(cfg), str(args.threads)],
                                capture_output=True, text=True, check=True, env=env)
        theirs.append(float(result.stdout.strip().splitlines()[-1]))
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    print(f"minigpt {ours_median * 1e3:.1f} ms, PyTorch (the book's class) {theirs_median * 1e3:.1f} ms, "
          f"ratio {ours_median / theirs_median:.2f}")


if __name__ == "__main__":
    sys.exit(main())
