"""Time the book's Qwen3 in eager PyTorch: the reference of `python scripts/bench.py qwen3`.

Runs under a Python with torch (never imported by minigpt) and imports the model classes of the
book's package (`--book-pkg`, the `pkg` folder of rasbt/LLMs-from-scratch: `llms_from_scratch/qwen3.py`
for training, `llms_from_scratch/kv_cache/qwen3.py` and `kv_cache/generate.py` for cached
generation), as they are; `requests`, which those modules import for their downloads only, is
stubbed when it is not installed. float32 weights, the same config as minigpt's side.

--mode train: `zero_grad`, forward + cross-entropy, `backward()`, `torch.optim.AdamW(lr=4e-4,
weight_decay=0.1)`, on random token batches; prints the seconds of each phase per timed step.
--mode generate: greedy generation with the book's KV cache (`generate_text_simple`), prints the
seconds of the prompt and of the new tokens. One JSON line, read by scripts/benchmarks/qwen3.py.

    /tmp/ref-llama/bin/python scripts/benchmarks/torch_reference/qwen3_step.py --book-pkg /work/book/pkg \\
        --config '{"vocab_size": 32768, ...}' --mode train --batch 2 --tokens 256
"""

import argparse
import json
import os
import resource
import sys
import time
import types

import torch


def _book_modules(book_pkg: str):
    """The book's qwen3 module and its KV-cache variant, with `requests` stubbed if missing."""
    if "requests" not in sys.modules:
        try:
            import requests  # noqa: F401
        except ImportError:
            sys.modules["requests"] = types.ModuleType("requests")  # used only to download weights
    sys.path.insert(0, book_pkg)
    from llms_from_scratch import qwen3
    from llms_from_scratch.kv_cache import generate as kv_generate
    from llms_from_scratch.kv_cache import qwen3 as kv_qwen3

    return qwen3, kv_qwen3, kv_generate


def train(qwen3, cfg: dict, batch: int, tokens: int, warmup: int, steps: int) -> dict:
    model = qwen3.Qwen3Model(cfg)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=4e-4, weight_decay=0.1)
    data = torch.randint(0, cfg["vocab_size"], (warmup + steps, batch, tokens + 1), generator=torch.Generator().manual_seed(0))
    fwd, bwd, opt, losses = [], [], [], []
    for step in range(warmup + steps):
        start = time.perf_counter()
        optimizer.zero_grad()
        logits = model(data[step, :, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), data[step, :, 1:].flatten())
        after_forward = time.perf_counter()
        loss.backward()
        after_backward = time.perf_counter()
        optimizer.step()
        end = time.perf_counter()
        losses.append(loss.item())
        if step >= warmup:
            fwd.append(after_forward - start)
            bwd.append(after_backward - after_forward)
            opt.append(end - after_backward)
    return {"fwd_s": fwd, "bwd_s": bwd, "opt_s": opt, "loss_first": losses[0], "loss_last": losses[-1],
            "parameters": sum(p.numel() for p in model.parameters())}


def generate(kv_qwen3, kv_generate, cfg: dict, prompt_tokens: int, new_tokens: int, rounds: int) -> dict:
    model = kv_qwen3.Qwen3Model(cfg).eval()
    prompt = torch.randint(0, cfg["vocab_size"], (1, prompt_tokens), generator=torch.Generator().manual_seed(0))
    seconds = []
    for _ in range(rounds + 1):  # the first round warms up
        start = time.perf_counter()
        out = kv_generate.generate_text_simple(model, prompt, new_tokens, use_cache=True)
        seconds.append(time.perf_counter() - start)
    return {"generate_s": seconds[1:], "tokens": out[0, prompt_tokens:].tolist()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--book-pkg", required=True, help="the book repository's pkg folder (holds llms_from_scratch/)")
    parser.add_argument("--config", required=True, help="the model config, JSON (the book's keys; dtype float32)")
    parser.add_argument("--mode", choices=("train", "generate"), required=True)
    parser.add_argument("--batch", type=int, default=2, help="sequences per training batch")
    parser.add_argument("--tokens", type=int, default=256, help="tokens per training sequence, or of the prompt")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens to generate")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=3, help="timed steps (or generation rounds)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = dict(json.loads(args.config), dtype=torch.float32)
    qwen3, kv_qwen3, kv_generate = _book_modules(args.book_pkg)
    if args.mode == "train":
        record = train(qwen3, cfg, args.batch, args.tokens, args.warmup, args.steps)
    else:
        record = generate(kv_qwen3, kv_generate, cfg, args.tokens, args.new_tokens, args.steps)
    record.update(torch=torch.__version__, threads=torch.get_num_threads(),
                  rss_peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
