"""Time the book's chapter-7 training step in eager PyTorch: gpt2-medium, AdamW(5e-5, 0.1), batch 8.

The PyTorch side of `python scripts/bench.py instruct` (it runs this file with a Python that has torch):
the book's GPTModel (`gpt.py` next to this file) in gpt2-medium's sizes with the qkv bias and a
separate output head, as the book's chapter 7 builds it (BASE_CONFIG, drop_rate 0.0), random
weights; one step = zero_grad + forward + cross-entropy + backward + AdamW step, on random token
batches of `--batch` x `--tokens`, with the padding targets of the last positions set to -100 as
`custom_collate_fn` makes them. Also times a forward pass without gradients (the evaluations of
`train_model_simple`). Prints one JSON line of seconds per phase.

    /tmp/torchref/bin/python scripts/benchmarks/torch_reference/instruct_step.py --tokens 72
"""

import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt import build  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="gpt2-medium", help="a name of gpt.CONFIGS (default gpt2-medium)")
    parser.add_argument("--batch", type=int, default=8, help="examples per batch (the book: 8)")
    parser.add_argument("--tokens", type=int, default=72, help="tokens per padded example")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=3, help="timed steps")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = build(args.config, drop_rate=0.0, qkv_bias=True)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.00005, weight_decay=0.1)  # the book's chapter 7
    generator = torch.Generator().manual_seed(0)
    vocab_size = model.tok_emb.weight.shape[0]
    data = torch.randint(0, vocab_size, (args.warmup + args.steps, args.batch, args.tokens + 1), generator=generator)
    data[:, :, -args.tokens // 8:] = -100  # the padding of the shorter examples is ignored
    forward, backward, update, evaluate = [], [], [], []
    for step in range(args.warmup + args.steps):
        inputs, targets = data[step, :, :-1].clamp(min=0), data[step, :, 1:]
        start = time.perf_counter()
        optimizer.zero_grad()
        logits = model(inputs)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        after_forward = time.perf_counter()
        loss.backward()
        after_backward = time.perf_counter()
        optimizer.step()
        end = time.perf_counter()
        with torch.no_grad():
            model.eval()
            model(inputs)
            model.train()
        after_eval = time.perf_counter()
        if step >= args.warmup:
            forward.append(after_forward - start)
            backward.append(after_backward - after_forward)
            update.append(end - after_backward)
            evaluate.append(after_eval - end)
    print(json.dumps({
        "side": "torch", "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": args.batch,
        "tokens": args.tokens, "parameters": sum(p.numel() for p in model.parameters()),
        "fwd_s": forward, "bwd_s": backward, "opt_s": update, "eval_fwd_s": evaluate,
        "rss_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }), flush=True)


if __name__ == "__main__":
    main()
