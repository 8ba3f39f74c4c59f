"""Time greedy generation with the book's GPT in eager PyTorch, with and without its KV cache.

Run under a Python that has torch (minigpt never imports this file); `python scripts/bench.py generate`
starts it as a subprocess and prints its figures next to minigpt's. The generation loop is the
book's `generate_text_simple_cached` (ch. 4 bonus, `gpt_with_kv_cache.py`) and, without the cache,
its `generate_text_simple` (listing 4.8): greedy decoding, the whole prompt first, then one token
per step (or the whole sequence per step without the cache).

Prints one JSON line: the seconds of every step (step 0 is the prompt), the total seconds, and the
generated ids' checksum (random weights: the text itself is gibberish).

    /tmp/torchref/bin/python generate.py --config gpt2-small --batch 1 --prompt-tokens 5 \\
        --new-tokens 200 --cache --threads 2
"""

import argparse
import json
import time

import torch

from gpt import CONFIGS, build


def generate_timed(model, idx, max_new_tokens: int, context_size: int, use_cache: bool):
    """Greedy decoding as the book's generate_text_simple(_cached); returns (ids, seconds per step)."""
    seconds = []
    with torch.no_grad():
        if use_cache:
            model.reset_kv_cache()
            start = time.perf_counter()
            logits = model(idx[:, -context_size:], use_cache=True)  # the whole prompt at once
            for _ in range(max_new_tokens):
                next_idx = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
                idx = torch.cat([idx, next_idx], dim=1)
                seconds.append(time.perf_counter() - start)
                start = time.perf_counter()
                logits = model(next_idx, use_cache=True)  # only the new token
        else:
            for _ in range(max_new_tokens):
                start = time.perf_counter()
                logits = model(idx[:, -context_size:])
                next_idx = logits[:, -1].argmax(dim=-1, keepdim=True)
                idx = torch.cat([idx, next_idx], dim=1)
                seconds.append(time.perf_counter() - start)
    return idx, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="gpt2-small", choices=list(CONFIGS))
    parser.add_argument("--batch", type=int, default=1, help="prompts generated together")
    parser.add_argument("--prompt-tokens", type=int, default=5, help="tokens per prompt")
    parser.add_argument("--new-tokens", type=int, default=200, help="tokens to generate per prompt")
    parser.add_argument("--cache", action="store_true", help="use the KV cache")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--warmup-tokens", type=int, default=5, help="an untimed short generation first")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = build(args.config).eval()
    context_size = CONFIGS[args.config][1]
    prompt = torch.randint(0, CONFIGS[args.config][0], (args.batch, args.prompt_tokens), generator=torch.Generator().manual_seed(0))
    generate_timed(model, prompt, args.warmup_tokens, context_size, args.cache)
    start = time.perf_counter()
    ids, seconds = generate_timed(model, prompt, args.new_tokens, context_size, args.cache)
    total = time.perf_counter() - start
    print(json.dumps({"side": "torch", "cache": args.cache, "batch": args.batch, "step_s": seconds, "total_s": total,
                      "checksum": int(ids.sum()), "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
