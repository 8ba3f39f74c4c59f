"""Run the book's notebooks on minigpt, imports changed only, and count the cells that print the book's text.

    python scripts/book_notebooks.py                      # the seven notebooks of issue 22, ~5 min
    python scripts/book_notebooks.py --notebooks ch03 appendix-A/code-part1
    python scripts/book_notebooks.py --with-training      # also the cells that train a GPT (minutes each)
    python scripts/book_notebooks.py --book /work/book --show 40

A report script, outside the test suite. For each notebook it copies the notebook's folder to a
temporary directory (with the-verdict.txt, so no cell downloads it), rewrites the import lines of
the notebook and of the folder's .py files by the mapping of docs/book.md (`import torch` ->
`import autograd as torch` ...), and runs the code cells in order in one namespace, as Jupyter
would: a cell's output is what it prints plus the repr of its last expression when that is not
None. Each output is compared, as text, with the output stored in the notebook (the book's run
with PyTorch). A cell "prints numbers" when its stored output holds a digit.

Each notebook runs in a fresh Python process, as a Jupyter kernel would (print options, seeds and
imported modules start anew). Every cell runs but those that train a GPT (chapter 5's
`train_model_simple`, appendix D's `train_model`: minutes each on a CPU; `--with-training` runs
them too), and chapter 5 stops where it loads OpenAI's weights. The process has no
network: `requests` is a stand-in that raises (the data files are in place, so the book's
`if not os.path.exists(...)` never downloads), and `importlib.metadata.version("torch")` /
`("tiktoken")` give minigpt's version, so the cells that print versions run on. A differing cell
gets a reason: a version, a device (the book's run used a GPU or MPS) or a timing when the book's
line says so, else the first line that differs. The notebook reader is the standard library's
json (.ipynb is JSON).

With `--torch-python PYTHON` (a Python with torch==2.13.0, e.g. a side venv; never a dependency)
each notebook also runs unchanged on PyTorch in this same way, and every cell minigpt gets wrong
says whether PyTorch 2.13 on this machine reproduces the book's text there (it does not where the
book's run came from another CPU, a GPU or other library versions).

Prints a table per notebook (code cells, run, skipped, cells printing numbers, exact matches) and
then the cells that print numbers but differ, with the first differing line.

References: Raschka, "Build a Large Language Model (From Scratch)", the notebooks of
rasbt/LLMs-from-scratch; the nbformat 4 JSON schema (cells, outputs, stream / execute_result).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERDICT = ROOT / "minigpt" / "corpora" / "the-verdict.txt"

# (short name, path under the book's checkout, code cell to stop before (its source contains this) or None)
NOTEBOOKS = [
    ("ch02", "ch02/01_main-chapter-code/ch02.ipynb", None),
    ("ch03", "ch03/01_main-chapter-code/ch03.ipynb", None),
    ("ch04", "ch04/01_main-chapter-code/ch04.ipynb", None),
    ("appendix-A/code-part1", "appendix-A/01_main-chapter-code/code-part1.ipynb", None),
    ("appendix-A/code-part2", "appendix-A/01_main-chapter-code/code-part2.ipynb", None),
    ("appendix-D", "appendix-D/01_main-chapter-code/appendix-D.ipynb", None),
    ("ch05", "ch05/01_main-chapter-code/ch05.ipynb", "download_and_load_gpt2"),
]

# The import lines of the book and their minigpt spelling (docs/book.md, "only the imports changed").
# `import torch` also imports minigpt's nn, which attaches torch.nn, torch.optim and torch.utils.data
# to autograd, as `import torch` makes them reachable in PyTorch.
IMPORTS = [
    (r"import torch$", "import autograd as torch; import minigpt.nn  # torch.nn, torch.optim, torch.utils"),
    (r"import torch\.nn as nn$", "from minigpt import nn"),
    (r"import torch\.nn\.functional as F$", "import autograd.functional as F"),
    (r"from torch\.autograd import grad$", "from autograd.autograd import grad"),
    (r"from torch\.utils\.data import (.*)$", r"from minigpt.data import \1"),
    (r"import tiktoken$", "from minigpt import tokenizer as tiktoken"),
]

# Why a cell's output differs, when a line of the book's output says so: (pattern, reason).
EXCUSES = [
    (r"version|^\d+\.\d+\.\d+", "a version (the book's PyTorch/tiktoken, minigpt's here)"),
    (r"\b(cuda|mps|device)\b", "a device (the book ran on a GPU/MPS; minigpt on the CPU)"),
    (r"\b(minutes|seconds|sec|time)\b", "a timing"),
]
TRAINING = ("train_model_simple(", "train_model(", "train_classifier_simple(")  # GPT training: minutes each


def rewrite_imports(source: str) -> str:
    """The source with each line of the book's imports replaced by minigpt's (indentation kept)."""
    lines = []
    for line in source.splitlines():
        stripped = line.strip()
        indent = line[: len(line) - len(line.lstrip())]
        for pattern, replacement in IMPORTS:
            if re.fullmatch(pattern, stripped):
                line = indent + re.sub(pattern, replacement, stripped)
                break
        lines.append(line)
    return "\n".join(lines)


def stored_output(cell: dict) -> str:
    """What the notebook shows under a cell: stdout text, then the last expression's text/plain."""
    parts = []
    for output in cell.get("outputs", []):
        if output["output_type"] == "stream" and output.get("name") == "stdout":
            parts.append("".join(output["text"]))
        elif output["output_type"] == "execute_result" and "text/plain" in output.get("data", {}):
            parts.append("".join(output["data"]["text/plain"]))
    return "".join(parts)


def _display(value) -> str:
    """Jupyter's text/plain of a value: IPython's pretty printer when installed, else repr."""
    try:
        from IPython.lib.pretty import pretty
    except ImportError:
        return repr(value)
    return pretty(value)


def run_cell(source: str, namespace: dict) -> tuple[str, str | None]:
    """Run one cell in `namespace` as Jupyter does; return (output text, error or None)."""
    source = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("!", "%")))
    out = io.StringIO()
    try:
        tree = ast.parse(source)
        last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        with contextlib.redirect_stdout(out):
            exec(compile(tree, "<cell>", "exec"), namespace)
            if last is not None:
                value = eval(compile(ast.Expression(last.value), "<cell>", "eval"), namespace)
                if value is not None:
                    print(_display(value), end="")
    except Exception as error:  # noqa: BLE001 - a report: every failure is reported, none stops the run
        frames = traceback.extract_tb(error.__traceback__)
        where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames) if "autograd" in f.filename or "minigpt" in f.filename), "")
        return out.getvalue(), f"{type(error).__name__}: {str(error)[:150]} {where}".strip()
    return out.getvalue(), None


def first_difference(expected: str, got: str) -> str:
    """A short reason: the first line that differs (book vs minigpt), labelled when it is a version,
    a device or a timing."""
    expected_lines, got_lines = expected.rstrip().splitlines(), got.rstrip().splitlines()
    for number, (want, have) in enumerate(zip(expected_lines, got_lines), 1):
        if want != have:
            label = next((why + ": " for pattern, why in EXCUSES if re.search(pattern, want, re.IGNORECASE)), "")
            return f"{label}line {number}: book {want.strip()[:70]!r} / minigpt {have.strip()[:70]!r}"
    return f"{len(expected_lines)} lines in the book, {len(got_lines)} on minigpt"


def _rewrite_tiktoken_only(source: str) -> str:
    """The reference run's rewrite: PyTorch stays, tiktoken is minigpt's (its ids are tiktoken's)."""
    return "\n".join(line.replace("import tiktoken", "from minigpt import tokenizer as tiktoken")
                     if line.strip() == "import tiktoken" else line for line in source.splitlines())


def _prepare_folder(notebook: Path, workdir: Path, rewrite) -> None:
    """Copy the notebook's folder into workdir, with the folder's .py imports rewritten and the data file."""
    for path in notebook.parent.iterdir():
        if path.is_file() and path.suffix in (".py", ".txt", ".json", ".tsv"):
            target = workdir / path.name
            if path.suffix == ".py":
                target.write_text(rewrite(path.read_text(encoding="utf-8")) + "\n", encoding="utf-8")
            else:
                shutil.copyfile(path, target)
    if not (workdir / "the-verdict.txt").exists():
        shutil.copyfile(VERDICT, workdir / "the-verdict.txt")


def _offline_process(reference: bool = False) -> None:
    """No network and minigpt's version for torch/tiktoken (PyTorch's own in reference mode), in
    this (child) process only."""
    import importlib.metadata
    import types

    requests = types.ModuleType("requests")

    def no_network(*args, **kwargs):
        raise ConnectionError("book_notebooks.py runs without network")

    requests.get = requests.post = no_network
    sys.modules["requests"] = requests
    real_version = importlib.metadata.version

    def version(name: str) -> str:
        if name in ("tiktoken",) + (() if reference else ("torch",)):
            return real_version("minigpt") if not reference else "minigpt"
        try:
            return real_version(name)
        except importlib.metadata.PackageNotFoundError:
            return "(not installed)"

    importlib.metadata.version = version


def run_notebook(path: Path, stop_at: str | None, with_training: bool, reference: bool = False) -> dict:
    """Run one notebook in this process; return its counts and the cells that differ. With
    `reference`, the book's code runs unchanged on PyTorch (only tiktoken is minigpt's)."""
    cells = [cell for cell in json.loads(path.read_text(encoding="utf-8"))["cells"] if cell["cell_type"] == "code"]
    result = {"cells": len(cells), "run": 0, "skipped": [], "numbers": 0, "match": 0, "differ": [], "seconds": 0.0}
    start = time.perf_counter()
    _offline_process(reference)
    rewrite = _rewrite_tiktoken_only if reference else rewrite_imports
    with tempfile.TemporaryDirectory(prefix="book-notebook-") as tmp:
        workdir = Path(tmp)
        _prepare_folder(path, workdir, rewrite)
        os.chdir(workdir)
        # The notebook's folder first (previous_chapters.py), then the tree this script belongs to
        # (after the installed packages in reference mode, so that `torch` is PyTorch).
        sys.path[:0] = [str(workdir)] if reference else [str(workdir), str(ROOT)]
        if reference:
            sys.path.append(str(ROOT))
        namespace = {"__name__": "__main__"}
        for number, cell in enumerate(cells, 1):
            source = "".join(cell["source"])
            if stop_at and stop_at in source:
                result["skipped"] += [[n, "loads OpenAI's weights, or comes after (out of scope)"] for n in range(number, len(cells) + 1)]
                break
            if not with_training and any(text in source for text in TRAINING):
                result["skipped"].append([number, "trains a GPT: minutes on a CPU (--with-training runs it)"])
                continue
            expected = stored_output(cell)
            got, error = run_cell(rewrite(source), namespace)
            result["run"] += 1
            if not re.search(r"\d", expected):
                if error:
                    result["differ"].append([number, f"(prints no numbers) {error}"])
                continue
            result["numbers"] += 1
            if got.rstrip() == expected.rstrip() and not error:
                result["match"] += 1
            else:
                if error and re.search(r"\b(cuda|mps)\b", error):
                    error = f"{EXCUSES[1][1]}: {error}"
                result["differ"].append([number, error or first_difference(expected, got)])
    result["seconds"] = time.perf_counter() - start
    return result


def _run_in_child(name: str, args, python: str | None = None) -> dict:
    """Run one notebook in a fresh Python process (`--one NAME`) and read its JSON result; with
    `python` (one that has torch), the reference run on PyTorch."""
    command = [python or sys.executable, __file__, "--one", name, "--book", str(args.book)]
    command += (["--with-training"] if args.with_training else []) + (["--reference"] if python else [])
    completed = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"})
    lines = completed.stdout.strip().splitlines()
    if completed.returncode != 0 or not lines:
        return {"cells": 0, "run": 0, "skipped": [], "numbers": 0, "match": 0, "seconds": 0.0,
                "differ": [[0, f"the notebook's process failed: {completed.stderr.strip()[-300:]}"]]}
    return json.loads(lines[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--book", type=Path, default=Path("/work/book"), help="the checkout of rasbt/LLMs-from-scratch")
    parser.add_argument("--notebooks", nargs="*", default=None,
                        help=f"short names to run (default all): {', '.join(name for name, _, _ in NOTEBOOKS)}")
    parser.add_argument("--with-training", action="store_true", help="also run the cells that train a GPT (minutes each)")
    parser.add_argument("--show", type=int, default=1000, help="at most this many differing cells listed per notebook")
    parser.add_argument("--torch-python", help="a Python with torch==2.13.0: also run each notebook on PyTorch, to tell")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run this notebook here, print JSON
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)  # internal: on PyTorch
    args = parser.parse_args(argv)
    entries = {name: (relative, stop_at) for name, relative, stop_at in NOTEBOOKS}
    if args.one:
        relative, stop_at = entries[args.one]
        result = run_notebook(args.book / relative, stop_at, args.with_training, args.reference)
        print("\n" + json.dumps(result))
        return 0
    results, references = {}, {}
    for name in args.notebooks or list(entries):
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results[name] = _run_in_child(name, args)
        if args.torch_python:
            references[name] = _run_in_child(name, args, args.torch_python)
    print(f"{'notebook':24s} {'code':>5s} {'run':>5s} {'skip':>5s} {'numbers':>8s} {'match':>6s} {'%':>6s} {'s':>6s}")
    total_numbers = total_match = 0
    for name, r in results.items():
        share = 100.0 * r["match"] / r["numbers"] if r["numbers"] else 100.0
        total_numbers += r["numbers"]
        total_match += r["match"]
        print(f"{name:24s} {r['cells']:5d} {r['run']:5d} {len(r['skipped']):5d} {r['numbers']:8d} {r['match']:6d} {share:6.1f} {r['seconds']:6.0f}")
    if total_numbers:
        print(f"{'all':24s} {'':5s} {'':5s} {'':5s} {total_numbers:8d} {total_match:6d} {100.0 * total_match / total_numbers:6.1f}")
    for name, r in results.items():
        if r["skipped"]:
            print(f"\n{name}: skipped cells")
            for number, reason in r["skipped"]:
                print(f"  [{number}] {reason}")
        if r["differ"]:
            print(f"\n{name}: cells that differ from the book")
            torch_differs = {number for number, _ in references.get(name, {}).get("differ", [])}
            for number, reason in r["differ"][: args.show]:
                also = " [PyTorch 2.13 here differs from the book too]" if number in torch_differs else ""
                print(f"  [{number}] {reason}{also}")
    if references:
        print(f"\nPyTorch 2.13 on this machine, same cells: {sum(r['match'] for r in references.values())} of "
              f"{sum(r['numbers'] for r in references.values())} print the book's text; per notebook "
              + ", ".join(f"{name} {r['match']}/{r['numbers']}" for name, r in references.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
