"""Benchmarks of minigpt's parts, each runnable as `python -m minigpt.benchmarks.<name>`.

`run(["engine", "--repeats", "3"])` dispatches to `minigpt.benchmarks.engine.main`; the command
line (`minigpt bench NAME` and `scripts/bench.py NAME`) goes through it.
"""

import importlib

NAMES = ("engine", "model", "tokenizer", "optim", "load", "library_loop", "finetune", "generate", "checkpoint", "lora", "instruct",
         "distributed", "network")


def check_torch_python(parser, torch_python: str | None) -> None:
    """Stop with a parser error unless `torch_python` (a --torch-python value) runs and imports torch.

    Checked before any measurement, so a wrong path fails at once rather than after minigpt's part.
    """
    if torch_python is None:
        return
    import subprocess

    try:
        done = subprocess.run([torch_python, "-c", "import torch"], capture_output=True, text=True, timeout=300, check=False)
    except OSError as error:
        parser.error(f"--torch-python {torch_python!r} cannot run: {error.strerror or error}")
    if done.returncode != 0:
        last_line = (done.stderr.strip().splitlines() or ["no message"])[-1]
        parser.error(f"--torch-python {torch_python!r} cannot import torch: {last_line}")


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
