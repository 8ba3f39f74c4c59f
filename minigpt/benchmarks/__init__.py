"""Benchmarks of minigpt's parts, each runnable as `python -m minigpt.benchmarks.<name>`.

`run(["engine", "--repeats", "3"])` dispatches to `minigpt.benchmarks.engine.main`; the command
line (`minigpt bench NAME` and `scripts/bench.py NAME`) goes through it.
"""

import importlib

NAMES = ("engine", "model", "tokenizer", "optim", "load", "library_loop", "finetune", "generate", "checkpoint", "lora", "instruct",
         "distributed")


def run(argv) -> int:
    """Run the benchmark named by argv[0] with the remaining arguments; return an exit status."""
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in NAMES:  # usage, or an unknown name
        asked = argv[0] if argv else None
        if asked not in (None, "-h", "--help"):
            print(f"unknown benchmark {asked!r}; expected one of: {', '.join(NAMES)}")
            return 2
        print(f"usage: bench NAME [options]   NAME: {', '.join(NAMES)}")
        return 0 if asked else 2
    module = importlib.import_module(f"minigpt.benchmarks.{argv[0]}")
    module.main(argv[1:])
    return 0
