"""List every PyTorch name the book's code uses and check that minigpt has it.

    python scripts/book_names.py                     # scan /work/book, print what is missing
    python scripts/book_names.py --all               # also the names found
    python scripts/book_names.py --book /work/book --where 3
    python scripts/book_names.py --write-torch-names /tmp/torchref/bin/python   # refresh the json

Scans the book's code (rasbt/LLMs-from-scratch): the notebooks' code cells and the .py files of
ch02-ch07 and appendices A, D and E, bonus folders included, and the book's package
`pkg/llms_from_scratch`. It collects, with Python's `ast`:

- dotted names rooted at `torch` (`torch.tril`, `torch.nn.functional.softmax`,
  `torch.cuda.is_available`), at the usual aliases (`nn.` for torch.nn, `F.` for
  torch.nn.functional) and in `from torch... import name`;
- method calls `x.name(...)` whose name is a public method of `torch.Tensor` (and not of a str,
  list, dict, set or tuple, where `x.split()` would be a string's), checked on `autograd.Tensor`;
- method calls whose name is a method of `torch.nn.Module` or `torch.optim.Optimizer` only,
  checked on `minigpt.nn.Module` / `minigpt.optim.Optimizer`.

Each name is resolved in minigpt's spelling of the book's imports (docs/book.md): `torch` is
`autograd` (with `minigpt.nn` imported, which attaches `torch.nn`, `torch.optim` and
`torch.utils.data`). A name is "found" when that attribute exists. The names of torch.Tensor,
nn.Module and Optimizer come from scripts/book_names_torch.json (dir() of each in torch 2.13;
`--write-torch-names PYTHON` regenerates it with a Python that has torch).

Names that other work owns or that are out of scope are listed apart (see OWNED_ELSEWHERE and
OUT_OF_SCOPE below): their reason is printed beside them.

References: docs/book.md (the import mapping and the scan's result).
"""

from __future__ import annotations

import argparse
import ast
import collections
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TORCH_NAMES = HERE / "book_names_torch.json"
FOLDERS = ["ch02", "ch03", "ch04", "ch05", "ch06", "ch07", "appendix-A", "appendix-D", "appendix-E", "pkg/llms_from_scratch"]
ALIASES = {"torch": "torch", "nn": "torch.nn", "F": "torch.nn.functional"}
MISSING = object()  # what _resolve returns for a name minigpt lacks (a found name may be None: torch.version.cuda)
PLAIN_METHODS = set().union(*(dir(kind) for kind in (str, list, dict, set, tuple, bytes)))

# Names another issue adds: the reason is printed instead of "missing".
OWNED_ELSEWHERE = [
    (r"(manual_seed|initial_seed|seed|Generator|get_rng_state|set_rng_state|rand|randn|randint|randperm|rand_like|"
     r"randn_like|randint_like|multinomial|bernoulli|normal|normal_|uniform_|exponential_|random_|random_split|"
     r"default_generator|fork_rng|init\..*)$", "random draws: autograd/random.py (issue 22)"),
    (r"(rms_norm|RMSNorm|silu|SiLU|bfloat16|polar|view_as_complex|view_as_real|complex64|rsqrt|.*rope.*|.*rotary.*)$",
     "Llama/Qwen layers and dtypes (issue 23)"),
]
# Names that need what minigpt does not have: a GPU, compilation, processes, other dtypes.
OUT_OF_SCOPE = [
    (r"cuda\..*|cuda|.*mps.*|backends\..*|xpu.*|device_count|.*cudnn.*|amp\..*|autocast|GradScaler|pin_memory|is_pinned",
     "GPU/MPS: minigpt runs on the CPU (torch.cuda.is_available() is False, as on a CPU-only PyTorch)"),
    (r"compile|jit.*|_dynamo.*|export.*|fx.*|_inductor.*|attention\.flex_attention\..*", "compilation: no compiler (flex_attention compiles its kernels)"),
    (r"Embedding\(padding_idx=\)", "not yet: a row that stays zero and gets no gradient; only the Gemma 4 bonus "
     "notebooks pass it, a model minigpt does not build"),
    (r"(Conv1d|conv1d|softplus)(\(.*=\))?", "Qwen3.5's gated delta-net bonus (convolutions, softplus): outside minigpt's GPT/Llama/Qwen3 models"),
    (r"MultiheadAttention(\(.*=\))?", "PyTorch's own attention layer (packed in_proj weights), only compared against in ch03's bonus"),
    (r"(optim\.)?AdamW\(fused=\)", "fused= is a GPU kernel choice"),
    (r"utils\.data\.Subset", "random_split returns Subsets (issue 22)"),
    (r"chunk\(axis=\)", "NumPy's spelling that PyTorch also takes; the book's notebook passes dim= elsewhere"),
    (r"distributed.*|multiprocessing.*|nn\.parallel.*|DistributedSampler|.*DistributedDataParallel.*|init_process_group|"
     r"destroy_process_group", "distributed: minigpt's MPI data parallelism is `minigpt train --mpi`, not DDP"),
    (r"(float8.*|uint16|uint32|.*quantiz.*|sparse.*|nested.*|complex.*)", "dtypes/layouts minigpt does not have"),
    (r"(_C|_utils|ops|library|hub\..*|profiler.*|utils\.(checkpoint|benchmark|cpp_extension|tensorboard).*|"
     r"testing.*|overrides.*|utils\._pytree.*)", "PyTorch internals and tooling"),
]


def _code_units(path: Path):
    """(label, source) pieces of one file: the whole .py file, or each code cell of a notebook."""
    if path.suffix == ".py":
        yield str(path), path.read_text(encoding="utf-8", errors="replace")
        return
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    for number, cell in enumerate([c for c in cells if c["cell_type"] == "code"], 1):
        source = "".join(cell["source"])
        source = "\n".join("pass" if line.lstrip().startswith(("!", "%")) else line for line in source.splitlines())
        yield f"{path}[{number}]", source


def _dotted(node) -> str | None:
    """'a.b.c' for an expression made of names and attributes only, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id] + parts[::-1])
    return None


def scan(book: Path) -> tuple[dict, dict, int]:
    """Walk the book's code; return ({dotted torch name: [where]}, {method name: [where]}, files read)."""
    torch_names, method_calls, files = collections.defaultdict(list), collections.defaultdict(list), 0
    for folder in FOLDERS:
        for path in sorted((book / folder).rglob("*")):
            if path.suffix not in (".py", ".ipynb") or ".ipynb_checkpoints" in path.parts:
                continue
            files += 1
            for label, source in _code_units(path):
                try:
                    tree = ast.parse(source)
                except SyntaxError:
                    continue
                for node in ast.walk(tree):
                    where = f"{label}:{getattr(node, 'lineno', 0)}"
                    if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "torch":
                        for alias in node.names:
                            torch_names[f"{node.module}.{alias.name}"].append(where)
                    elif isinstance(node, ast.Attribute) and not isinstance(getattr(node, "parent", None), ast.Attribute):
                        dotted = _dotted(node)
                        if dotted and dotted.split(".")[0] in ALIASES:
                            root, _, rest = dotted.partition(".")
                            torch_names[f"{ALIASES[root]}.{rest}"].append(where)
                    if isinstance(node, ast.Call) and _dotted(node.func) and _dotted(node.func).split(".")[0] in ALIASES:
                        root, _, rest = _dotted(node.func).partition(".")
                        for keyword in node.keywords:
                            if keyword.arg:
                                torch_names[f"{ALIASES[root]}.{rest}({keyword.arg}=)"].append(where)
                    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                        owner = _dotted(node.func.value)
                        if owner is None or owner.split(".")[0] not in ALIASES | {"np": 0, "os": 0, "json": 0, "re": 0}:
                            method_calls[node.func.attr].append(where)
                    for child in ast.iter_child_nodes(node):
                        child.parent = node
    return torch_names, method_calls, files


def _resolve(name: str):
    """The minigpt object for a dotted torch name (MISSING when an attribute is missing). For
    `torch.f(keyword=)` (a keyword argument of a call), f itself when it accepts that keyword."""
    import autograd
    import minigpt.nn  # noqa: F401 - attaches autograd.nn, .optim, .utils (docs/book.md)

    keyword = None
    if name.endswith("=)"):
        name, _, keyword = name[:-2].partition("(")
    value = autograd
    for part in name.split(".")[1:]:
        if not hasattr(value, part):
            return MISSING
        value = getattr(value, part)
    if keyword is not None:
        try:
            parameters = inspect.signature(value.__init__ if isinstance(value, type) else value).parameters
        except (TypeError, ValueError):
            return value  # a builtin without a signature: not checked
        if keyword not in parameters and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            return MISSING
    return value


def _reason(name: str) -> str | None:
    """Why a missing name is not minigpt's to add here, or None. The patterns are tried on the
    name without `torch.` (and without `nn.` / `nn.functional.` / `Tensor.`), with and without a
    `(keyword=)` suffix, and on its last component."""
    short = name.split(".", 1)[1] if "." in name else name
    bare = re.sub(r"^(nn\.functional|nn|Tensor)\.", "", short)
    plain = re.sub(r"\(.*=\)$", "", bare)
    candidates = {short, bare, plain, plain.rsplit(".", 1)[-1]}
    for pattern, reason in OWNED_ELSEWHERE + OUT_OF_SCOPE:
        if any(re.fullmatch(pattern, candidate) for candidate in candidates):
            return reason
    return None


def check(book: Path):
    """Classify every name: (found, missing, elsewhere) lists of (name, count, first place)."""
    import autograd
    import minigpt.nn as mnn
    import minigpt.optim as moptim

    known = json.loads(TORCH_NAMES.read_text())
    tensor_methods = set(known["torch.Tensor"]) - PLAIN_METHODS
    module_methods = (set(known["torch.nn.Module"]) | set(known["torch.optim.Optimizer"])) - set(known["torch.Tensor"]) - PLAIN_METHODS
    torch_names, method_calls, files = scan(book)
    rows = []
    for name, where in sorted(torch_names.items()):
        rows.append((name, where, _resolve(name) is not MISSING))
    for name, where in sorted(method_calls.items()):
        if name in tensor_methods:
            rows.append((f"Tensor.{name}", where, hasattr(autograd.Tensor, name)))
        elif name in module_methods:
            has = hasattr(mnn.Module, name) or hasattr(moptim.Optimizer, name)
            rows.append((f"Module/Optimizer.{name}", where, has))
    found = [(n, len(w), w[0]) for n, w, ok in rows if ok]
    missing = [(n, len(w), w[0]) for n, w, ok in rows if not ok and _reason(n) is None]
    elsewhere = [(n, len(w), w[0], _reason(n)) for n, w, ok in rows if not ok and _reason(n) is not None]
    return found, missing, elsewhere, files


def _write_torch_names(python: str) -> None:
    """Regenerate scripts/book_names_torch.json with a Python that has torch installed."""
    code = (
        "import json, torch; print(json.dumps({'source': 'dir() of these classes in torch ' + torch.__version__.split('+')[0]"
        " + ' (CPU wheel), public names', 'torch.Tensor': sorted(n for n in dir(torch.Tensor) if not n.startswith('_')),"
        " 'torch.nn.Module': sorted(n for n in dir(torch.nn.Module) if not n.startswith('_')),"
        " 'torch.optim.Optimizer': sorted(n for n in dir(torch.optim.Optimizer) if not n.startswith('_'))}, indent=0))"
    )
    TORCH_NAMES.write_text(subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--book", type=Path, default=Path("/work/book"), help="the checkout of rasbt/LLMs-from-scratch")
    parser.add_argument("--all", action="store_true", help="also list the names minigpt has")
    parser.add_argument("--write-torch-names", metavar="PYTHON", help="regenerate book_names_torch.json with this Python (has torch)")
    args = parser.parse_args(argv)
    if args.write_torch_names:
        _write_torch_names(args.write_torch_names)
    found, missing, elsewhere, files = check(args.book)
    print(f"{files} files scanned; {len(found) + len(missing) + len(elsewhere)} distinct names: "
          f"{len(found)} found, {len(missing)} missing, {len(elsewhere)} owned elsewhere or out of scope")
    print("\nmissing (uses, first place):")
    for name, count, where in missing:
        print(f"  {name:50s} {count:4d}  {Path(where).name if '/' in where else where}")
    print("\nowned elsewhere or out of scope:")
    for name, count, where, reason in elsewhere:
        print(f"  {name:50s} {count:4d}  {reason}")
    if args.all:
        print("\nfound:")
        for name, count, where in found:
            print(f"  {name:50s} {count:4d}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
