"""Encoding speed of the Llama 3 / Qwen3 tokenizers next to GPT-2's, on tinyshakespeare.txt.

    python scripts/tokenizer_speed.py

Times `encode` of the whole 1.1 MB text, first call (empty piece cache: every distinct piece is
merged) and second call (cached), best of `--repeats`, each tokenizer built fresh. The Llama 3 and
Qwen3 tokenizers read the test fixtures' small generated vocabularies (1,500 tokens, so more
merges per piece than with the real 128k / 151k ones); GPT-2's is its real 50k vocabulary.
`--tokenizer-json PATH` adds any other tokenizer.json (e.g. a larger vocabulary trained with
scripts/make_tokenizer_fixtures.py's `train`).
"""

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "llama_qwen_tokenizers"


def _time(make, text, repeats):
    first, second = [], []
    for _ in range(repeats):
        tokenizer = make()
        start = time.perf_counter()
        ids = tokenizer(text)
        first.append(time.perf_counter() - start)
        start = time.perf_counter()
        tokenizer(text)
        second.append(time.perf_counter() - start)
    return min(first), min(second), len(ids)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per tokenizer (best is reported)")
    parser.add_argument("--tokenizer-json", default=None, help="another tokenizer.json to time (path)")
    args = parser.parse_args(argv)
    from minigpt.hf_tokenizer import HFTokenizer
    from minigpt.llama3_tokenizer import Llama3Tokenizer
    from minigpt.tokenizer import Encoding, get_encoding

    text = (ROOT / "minigpt" / "corpora" / "tinyshakespeare.txt").read_text(encoding="utf-8")

    def gpt2():
        base = get_encoding("gpt2")
        fresh = Encoding("gpt2", pat_str=base._pat_str, mergeable_ranks=base._mergeable_ranks,
                         special_tokens=base._special_tokens)
        return fresh.encode_ordinary

    makers = {
        "gpt2 (Encoding, 50k)": gpt2,
        "llama3 (Llama3Tokenizer, rank file)": lambda: Llama3Tokenizer(FIXTURES / "llama3-style.tiktoken").encode,
        "qwen3 (HFTokenizer, tokenizer.json)": lambda: HFTokenizer.from_file(FIXTURES / "qwen3-style.tokenizer.json").encode_ids,
    }
    if args.tokenizer_json:
        makers[f"HFTokenizer ({Path(args.tokenizer_json).name})"] = lambda: HFTokenizer.from_file(args.tokenizer_json).encode_ids
    print(f"{len(text):,} characters")
    for name, make in makers.items():
        first, second, count = _time(make, text, args.repeats)
        print(f"{name:40s} first {first:6.3f} s  cached {second:6.3f} s  {count:,} ids  "
              f"{len(text) / first / 1e6:5.2f} / {len(text) / second / 1e6:5.2f} MB/s")


if __name__ == "__main__":
    main()
