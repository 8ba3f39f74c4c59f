"""`minigpt bench`: run one of minigpt's benchmarks (minigpt/benchmarks/NAME.py).

Each benchmark parses its own options; `minigpt bench --help` lists every benchmark with its
options (read from the benchmark's own parser, so the list cannot fall behind), and
`minigpt bench NAME --help` shows one.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io

from minigpt.benchmarks import NAMES

HELP = f"run a benchmark ({', '.join(NAMES)}); `minigpt bench --help` lists their options"


def add_parser(subparsers) -> None:
    # The arguments are not parsed here: `minigpt.cli.main` hands them to `main` as they are.
    parser = subparsers.add_parser("bench", help=HELP, add_help=False)
    parser.add_argument("arguments", nargs=argparse.REMAINDER)


def benchmark_help() -> str:
    """The usage of `minigpt bench` with each benchmark's description and options."""
    from minigpt.benchmarks import NAMES

    parts = ["usage: minigpt bench NAME [options]",
             "",
             "Benchmarks of minigpt's parts; run them with the machine's OpenBLAS variables unset, e.g.",
             "  env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE minigpt bench engine",
             "",
             "benchmarks and their options:"]
    for name in NAMES:
        module = importlib.import_module(f"minigpt.benchmarks.{name}")
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
    """Run `minigpt bench ARGV`: a benchmark by name, or the help."""
    from minigpt.benchmarks import NAMES, run

    if not argv or argv[0] in ("-h", "--help"):
        print(benchmark_help())
        return 0 if argv else 2
    if argv[0] not in NAMES:
        print(f"minigpt bench: error: unknown benchmark {argv[0]!r}; expected one of: {', '.join(NAMES)}")
        return 2
    return run(argv)


def run(args) -> int:
    """Run `minigpt bench` from parsed arguments (the `arguments` left unparsed)."""
    return main(args.arguments)
