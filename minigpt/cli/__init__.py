"""The `minigpt` command line, one module per command: train, generate, download, prepare, bench.

    minigpt train                                  # a small GPT on the bundled the-verdict.txt
    minigpt train --preset gpt2-small              # the book's chapter-5 run (GPT_CONFIG_124M, context 256)
    minigpt train --preset char --data tinyshakespeare.txt --tokenizer char   # nanoGPT's Shakespeare-char
    minigpt generate --checkpoint runs/verdict --prompt "Every effort moves you"
    minigpt generate --model gpt2-small --prompt "Every effort moves you" --temperature 1.4 --top-k 25
    minigpt download gpt2-medium                   # OpenAI's weights into ~/.cache/minigpt
    minigpt prepare big.txt big.bin                # tokenize once into a memory-mapped token file
    minigpt finetune classify --model gpt2-small   # the book's chapter 6: a spam classifier
    minigpt classify --checkpoint runs/classify "You won a prize!"
    minigpt bench engine                           # benchmarks (engine, model, tokenizer, optim)

`python -m minigpt ...` is the same. Every subcommand's `--help` lists its flags with units.
Each command module (`minigpt/cli/train.py`, ...) has `add_parser(subparsers)` and `run(args)`;
a new command is a new module listed in `COMMANDS`. `main(argv=None)` takes a list of arguments,
so tests call it directly.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from minigpt.cli.common import BUNDLED_CORPORA, bundled_corpus_path

# Commands in the order `minigpt --help` lists them; each is the module minigpt.cli.<name>.
COMMANDS = ("train", "generate", "prepare", "download", "finetune", "classify")
# Commands that run a model for long: they get the process settings that make the engine fast.
_COMPUTE_COMMANDS = ("train", "generate", "finetune", "classify")

__all__ = ["main", "COMMANDS", "BUNDLED_CORPORA", "bundled_corpus_path"]


def main(argv=None) -> int:
    """Entry point of the `minigpt` command (and `python -m minigpt`)."""
    parser = argparse.ArgumentParser(prog="minigpt", description="A GPT built from scratch on NumPy: train, generate, download, prepare, finetune, classify, bench.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    modules = {name: importlib.import_module(f"minigpt.cli.{name}") for name in COMMANDS}
    for module in modules.values():
        module.add_parser(subparsers)
    bench = subparsers.add_parser("bench", help="run a benchmark (engine, model, tokenizer, optim, load, finetune)", add_help=False)
    bench.add_argument("arguments", nargs=argparse.REMAINDER)
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # the benchmark parses its own options (including --help)
        from minigpt.benchmarks import run

        return run(argv[1:])
    args = parser.parse_args(argv)
    if args.command in _COMPUTE_COMMANDS:
        from autograd.memory import keep_freed_memory
        from autograd.parallel import set_openblas_thread_timeout

        from minigpt.cli.common import set_threads

        keep_freed_memory()  # reuse freed activation buffers across steps (about 10 % faster)
        set_openblas_thread_timeout()  # idle BLAS threads free their core for the engine's threads
        if args.threads is not None:
            set_threads(args.command, args.threads)
    return modules[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
