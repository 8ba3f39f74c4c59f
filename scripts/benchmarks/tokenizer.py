"""Tokenizer benchmark: GPT-2 encode/decode throughput and BPE training time.

Measures, on one text (tinyshakespeare.txt by default):

- GPT-2 **cold encode**: the first ``encode_ordinary`` of the whole text in a fresh Python
  process, after the tokenizer is loaded (minigpt's cache of merged pieces starts empty);
  the median of ``--cold-runs`` processes. Loading time is reported apart.
- GPT-2 **warm encode**: the same text encoded again in that process, median of ``--repeats``.
- GPT-2 **decode** of the ids back to text, median of ``--repeats``.
- **BPE training** of a 1,000- and a 4,096-token vocabulary (GPT-2 pattern, one special token).
- With ``--length-curve`` (instead of the above): the **length curve** of issue 10, seconds to
  encode one run of a letter, a digit, punctuation, newlines, an emoji and U+3000 (each run is
  one pre-token piece) at 1 K, 10 K, 100 K and 1 M characters, and the growth exponent between
  two lengths, log(t2 / t1) / log(n2 / n1): 1 for linear time, a little above 1 for n log n, 2
  for quadratic. minigpt's cache of pieces is emptied before each encode. Also the
  ``BPETokenizer`` (a 1,000-token vocabulary trained on the text plus runs) on the same runs.

Side by side with tiktoken and Hugging Face ``tokenizers`` when they can be imported, both built
offline from the package's own vocabulary files (tiktoken from ``gpt2.tiktoken``, tokenizers from
``encoder.json`` + ``vocab.bpe``), and checked to give minigpt's ids. All are single-threaded:
tiktoken's ``encode_ordinary`` is, and ``TOKENIZERS_PARALLELISM=false`` is set for tokenizers.
tiktoken has no trainer. Neither library is a dependency of minigpt; install them elsewhere::

    python3 -m venv /tmp/tokref && /tmp/tokref/bin/pip install -e . tiktoken tokenizers
    /tmp/tokref/bin/python scripts/bench.py tokenizer

Throughput is MB/s of UTF-8 input (1 MB = 10^6 bytes) for encoding, and of UTF-8 output for
decoding.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import child_python_path
from minigpt.tokenizer import ENDOFTEXT, GPT2_SPLIT_PATTERN, VOCAB_DIR

# Single-threaded Hugging Face tokenizers, for a like-for-like comparison; set before it loads.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_TEXT = VOCAB_DIR.parents[1] / "corpora" / "tinyshakespeare.txt"  # bundled with the package (minigpt/corpora/)
LIBRARIES = ("minigpt", "tiktoken", "tokenizers")
# The runs of the length curve: one character each, every kind that GPT-2's pattern keeps in one piece.
RUN_KINDS = {"letter": "a", "digit": "7", "punctuation": "!", "newline": "\n", "emoji": "\U0001F600", "U+3000": "\u3000"}


def build_gpt2(library: str):
    """GPT-2's tokenizer from ``library``, as an object with ``encode(text) -> list[int]`` and
    ``decode(ids) -> str``, built from the files in ``minigpt/vocab/gpt2/`` without network.

    Raises:
        ImportError: if the library is not installed.
    """
    if library == "minigpt":
        from minigpt.tokenizer import get_encoding

        encoding = get_encoding("gpt2")
        return encoding.encode_ordinary, encoding.decode
    if library == "tiktoken":
        import tiktoken
        from tiktoken.load import load_tiktoken_bpe

        encoding = tiktoken.Encoding(
            name="gpt2-local",
            pat_str=GPT2_SPLIT_PATTERN,
            mergeable_ranks=load_tiktoken_bpe(str(VOCAB_DIR / "gpt2.tiktoken")),
            special_tokens={ENDOFTEXT: 50256},
        )
        return encoding.encode_ordinary, encoding.decode
    if library == "tokenizers":
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers

        tokenizer = Tokenizer(models.BPE.from_file(str(VOCAB_DIR / "encoder.json"), str(VOCAB_DIR / "vocab.bpe")))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tokenizer.decoder = decoders.ByteLevel()

        def encode(text: str) -> list[int]:
            return tokenizer.encode(text, add_special_tokens=False).ids

        return encode, tokenizer.decode
    raise ValueError(f"unknown library {library!r}: expected one of {LIBRARIES}")


def is_available(library: str) -> bool:
    """Whether ``library`` can be imported here."""
    if library == "minigpt":
        return True
    try:
        __import__(library)
    except ImportError:
        return False
    return True


def cold_worker(library: str, text_path: str) -> None:
    """Run in a fresh process: load, encode once (cold), print timings as one JSON line."""
    text = Path(text_path).read_text(encoding="utf-8")
    start = time.perf_counter()
    encode, _ = build_gpt2(library)
    loaded = time.perf_counter()
    encode(text)
    encoded = time.perf_counter()
    print(json.dumps({"load_seconds": loaded - start, "cold_seconds": encoded - loaded}))


def measure_cold(library: str, text_path: Path, runs: int) -> dict[str, float]:
    """Median load and cold-encode seconds over ``runs`` fresh processes."""
    # The child must import this same minigpt, installed or not, and these benchmarks.
    environment = dict(os.environ)
    environment["PYTHONPATH"] = child_python_path(environment)
    results = []
    for _ in range(runs):
        code = f"from benchmarks.tokenizer import cold_worker; cold_worker({library!r}, {str(text_path)!r})"
        output = subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=environment
        ).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
    return {key: statistics.median(result[key] for result in results) for key in results[0]}


def median_seconds(function, repeats: int) -> float:
    """Median wall-clock seconds of ``function()`` over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_seconds(library: str, text: str, vocab_size: int) -> float:
    """Seconds to train a byte-level BPE vocabulary of ``vocab_size`` tokens (GPT-2 pattern)."""
    if library == "minigpt":
        from minigpt.bpe import BPETokenizer

        tokenizer = BPETokenizer(pattern="gpt2", special_tokens=[ENDOFTEXT])
        start = time.perf_counter()
        tokenizer.train(text, vocab_size)
        return time.perf_counter() - start
    if library == "tokenizers":
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=[ENDOFTEXT],
        )
        start = time.perf_counter()
        tokenizer.train_from_iterator([text], trainer)
        return time.perf_counter() - start
    raise ValueError(f"{library} has no BPE trainer")


def run_seconds(encode, text: str, clear_cache, budget_seconds: float = 1.0, max_repeats: int = 5) -> float:
    """Median seconds of `encode(text)` after `clear_cache()`, repeated while under `budget_seconds`."""
    times = []
    while len(times) < max_repeats and sum(times) < budget_seconds:
        clear_cache()
        start = time.perf_counter()
        encode(text)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def length_curve(libraries: list[str], lengths: list[int], train_text: str) -> dict:
    """Seconds to encode a run of each kind of `RUN_KINDS` at each length, per library; prints a table.

    Returns:
        ``{library: {kind: {length: seconds}}}``; library ``"minigpt-bpe"`` is ``BPETokenizer``.
    """
    encoders = {}
    for library in libraries:
        if library == "tokenizers":
            continue  # its byte-level pre-tokenizer differs on long runs; tiktoken is the reference here
        encode, _ = build_gpt2(library)
        encoders[library] = encode
    from minigpt.tokenizer import get_encoding

    bpe = None
    if "minigpt" in libraries:
        from minigpt.bpe import BPETokenizer

        bpe = BPETokenizer(pattern="gpt2")
        bpe.train(train_text + "".join(f" {character * 1000}" for character in RUN_KINDS.values()), 1000)
        encoders["minigpt-bpe"] = bpe.encode_ordinary
    results: dict[str, dict] = {library: {} for library in encoders}
    print(f"\nLength curve: seconds to encode one run (one piece); exponent = log(t2/t1) / log(n2/n1) "
          f"from the previous length (1 linear, 2 quadratic)")
    print(f"{'kind':<12} {'library':<12} " + " ".join(f"{f'{length:,} chars':>16}" for length in lengths))
    for kind, character in RUN_KINDS.items():
        for library, encode in encoders.items():
            # Time the merge, not a hit in the cache of pieces.
            clear_cache = {"minigpt": get_encoding("gpt2")._cache.clear, "minigpt-bpe": bpe and bpe._cache.clear}.get(library, lambda: None)
            row = results[library].setdefault(kind, {})
            cells = []
            for length in lengths:
                text = character * length
                try:
                    row[length] = run_seconds(encode, text, clear_cache)
                except (KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as error:  # tiktoken's regex overflows its stack on 1M newlines (a Rust panic)
                    row[length] = None
                    cells.append(f"failed: {type(error).__name__}")
                    continue
                previous = lengths[lengths.index(length) - 1] if lengths.index(length) else None
                if previous is not None and row.get(previous) is None:
                    previous = None
                exponent = "" if previous is None else f" ({math.log(row[length] / row[previous]) / math.log(length / previous):.2f})"
                cells.append(f"{row[length]:.4f}{exponent}")
            print(f"{kind:<12} {library:<12} " + " ".join(f"{cell:>16}" for cell in cells), flush=True)
    return results


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark and print a table; returns the figures as a dict (for tests/scripts)."""
    parser = argparse.ArgumentParser(prog="python scripts/bench.py tokenizer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", type=Path, default=DEFAULT_TEXT, help="UTF-8 text file to encode and train on (default: tinyshakespeare.txt)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions of warm encode and decode (median reported)")
    parser.add_argument("--cold-runs", type=int, default=3, help="fresh processes for the cold first encode (median reported)")
    parser.add_argument("--vocab-sizes", type=int, nargs="*", default=[1000, 4096], help="BPE training vocabulary sizes, in tokens")
    parser.add_argument("--libraries", nargs="*", default=list(LIBRARIES), choices=LIBRARIES, help="which tokenizers to measure (skipped if not importable)")
    parser.add_argument("--length-curve", action="store_true", help="measure only the time to encode long runs of one kind of character against their length")
    parser.add_argument("--lengths", type=int, nargs="*", default=[1_000, 10_000, 100_000, 1_000_000], help="run lengths of the length curve, in characters")
    args = parser.parse_args(argv)

    text = args.text.read_text(encoding="utf-8")
    megabytes = len(text.encode("utf-8")) / 1e6
    libraries = [library for library in args.libraries if is_available(library)]
    skipped = sorted(set(args.libraries) - set(libraries))
    print(f"text: {args.text} ({megabytes:.3f} MB), python {sys.version.split()[0]}, "
          f"repeats {args.repeats}, cold runs {args.cold_runs}")
    if skipped:
        print(f"not importable, skipped: {', '.join(skipped)}")

    if args.length_curve:
        return {"length_curve": length_curve(libraries, sorted(args.lengths), text)}

    figures: dict[str, dict] = {}
    reference_ids = None
    print(f"\n{'GPT-2 tokenizer':<12} {'load s':>8} {'cold MB/s':>10} {'warm MB/s':>10} {'decode MB/s':>12}  same ids")
    for library in libraries:
        cold = measure_cold(library, args.text, args.cold_runs)
        encode, decode = build_gpt2(library)
        ids = encode(text)
        if reference_ids is None:
            reference_ids = ids
        warm = median_seconds(lambda: encode(text), args.repeats)
        decode_time = median_seconds(lambda: decode(ids), args.repeats)
        figures[library] = {
            "load_seconds": cold["load_seconds"],
            "cold_mb_per_s": megabytes / cold["cold_seconds"],
            "warm_mb_per_s": megabytes / warm,
            "decode_mb_per_s": megabytes / decode_time,
            "same_ids": ids == reference_ids,
            "num_tokens": len(ids),
        }
        row = figures[library]
        print(f"{library:<12} {row['load_seconds']:>8.3f} {row['cold_mb_per_s']:>10.2f} {row['warm_mb_per_s']:>10.2f} "
              f"{row['decode_mb_per_s']:>12.2f}  {'yes' if row['same_ids'] else 'NO'} ({len(ids)} tokens)")

    if "minigpt" in figures and "tiktoken" in figures:
        ours, theirs = figures["minigpt"], figures["tiktoken"]
        print(f"minigpt / tiktoken: cold {ours['cold_mb_per_s'] / theirs['cold_mb_per_s']:.2f}x, "
              f"warm {ours['warm_mb_per_s'] / theirs['warm_mb_per_s']:.2f}x (targets: >= 0.3x cold, >= 0.5x warm)")

    print(f"\n{'BPE training':<12} " + " ".join(f"{f'{size} tokens, s':>16}" for size in args.vocab_sizes))
    for library in libraries:
        if library == "tiktoken":
            continue  # no trainer
        seconds = [train_seconds(library, text, size) for size in args.vocab_sizes]
        figures.setdefault(library, {})["train_seconds"] = dict(zip(args.vocab_sizes, seconds))
        print(f"{library:<12} " + " ".join(f"{value:>16.2f}" for value in seconds))
    return figures


if __name__ == "__main__":
    main()
