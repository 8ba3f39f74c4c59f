"""Benchmarks of minigpt's parts, outside the installed package: `python scripts/bench.py NAME`.

`run(["engine", "--repeats", "3"])` dispatches to `benchmarks.engine.main`; the command line
(`python scripts/bench.py NAME [options]`, run from the repository root) goes through it. This
folder is the `benchmarks` package when `scripts/` is on `sys.path` (scripts/bench.py puts it
there; a benchmark's subprocesses get it through `PYTHONPATH`, see `child_python_path`).
"""

import contextlib
import importlib
import io
import os
import sys

SCRIPTS_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # scripts/
REPO_ROOT = os.path.dirname(SCRIPTS_DIR)


def child_python_path(environment: dict) -> str:
    """The PYTHONPATH for a benchmark's subprocess: scripts/ (for `benchmarks`), then the repository
    root (this same minigpt, installed or not), then `environment`'s own PYTHONPATH."""
    return os.pathsep.join(filter(None, [SCRIPTS_DIR, REPO_ROOT, environment.get("PYTHONPATH")]))

NAMES = ("engine", "model", "tokenizer", "optim", "load", "library_loop", "finetune", "generate", "checkpoint", "lora", "instruct",
         "distributed", "network", "qwen3")


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


def benchmark_help() -> str:
    """The usage of `scripts/bench.py` with each benchmark's description and options.

    The options are read from each benchmark's own parser, so the list cannot fall behind.
    """
    parts = ["usage: python scripts/bench.py NAME [options]",
             "",
             "Benchmarks of minigpt's parts; run them with the machine's OpenBLAS variables unset, e.g.",
             "  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python scripts/bench.py engine",
             "",
             "benchmarks and their options:"]
    for name in NAMES:
        module = importlib.import_module(f"benchmarks.{name}")
        captured = io.StringIO()
        with contextlib.redirect_stdout(captured), contextlib.suppress(SystemExit):
            module.main(["--help"])  # argparse prints the help and exits
        text = captured.getvalue()
        summary = (module.__doc__ or "").strip().split("\n")[0]
        options = text[text.find("options:") + len("options:"):] if "options:" in text else ""
        lines = [line for line in options.splitlines() if line.strip() and "-h, --help" not in line
                 and "show this help message" not in line]
        parts += ["", f"  {name}: {summary}", *[f"  {line}" for line in lines]]
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    """Run `scripts/bench.py ARGV`: a benchmark by name, or the help; return an exit status.

    `-h`/`--help` prints the help and returns 0; no argument, or an unknown name, prints the usage
    and an error naming the benchmarks on stderr and returns 2 (as argparse does).
    """
    if argv and argv[0] in ("-h", "--help"):
        print(benchmark_help())
        return 0
    if not argv or argv[0] not in NAMES:
        problem = f"unknown benchmark {argv[0]!r}" if argv else "name a benchmark"
        print(f"usage: python scripts/bench.py NAME [options]\nbench.py: error: {problem}; expected one of: "
              f"{', '.join(NAMES)} (`python scripts/bench.py --help` lists their options)", file=sys.stderr)
        return 2
    return run(argv)


def run(argv) -> int:
    """Run the benchmark named by argv[0] with the remaining arguments; return an exit status."""
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in NAMES:  # usage, or an unknown name
        asked = argv[0] if argv else None
        if asked not in (None, "-h", "--help"):
            print(f"unknown benchmark {asked!r}; expected one of: {', '.join(NAMES)}")
            return 2
        print(f"usage: bench NAME [options]   NAME: {', '.join(NAMES)}")
        return 0 if asked else 2
    module = importlib.import_module(f"benchmarks.{argv[0]}")
    module.main(argv[1:])
    return 0
