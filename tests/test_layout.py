"""The shape of the source tree that the learner's path depends on (issue: the learner's path).

- no import circles in `autograd/` and `minigpt/`, counting imports inside functions and
  `from package import name` (which runs the package's `__init__.py`);
- the engine never imports minigpt;
- no function longer than about 80 lines of code (docstring excluded);
- `Tensor` is whole in one class body: no module assigns attributes to it.

Each check reads the files as text (`ast`): nothing is imported or run.
"""

from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("autograd", "minigpt")
LONGEST_FUNCTION = 80  # lines of code, docstring excluded


def _modules() -> dict[str, str]:
    """Dotted module name -> file path, for every .py file of the two packages."""
    files = {}
    for package in PACKAGES:
        for folder, _, names in os.walk(os.path.join(ROOT, package)):
            for name in names:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    files[dotted.removesuffix(".__init__")] = path
    return files


def _trees(files: dict[str, str]) -> dict[str, ast.Module]:
    return {module: ast.parse(open(path, encoding="utf-8").read(), path) for module, path in files.items()}


def _imports(module: str, path: str, tree: ast.Module, files: dict[str, str]) -> set[str]:
    """The modules of the two packages that `module` imports anywhere in its file.

    `from a.b import c` counts as importing `a.b.c` when that is a module, else `a.b` (its
    `__init__.py`, which is what runs to provide the name).
    """

    def resolve(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    targets = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if path.endswith("__init__.py") else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base for alias in node.names]
        for name in names:
            target = resolve(name)
            if target and target != module:
                targets.add(target)
    return targets


def _import_graph() -> dict[str, set[str]]:
    files = _modules()
    trees = _trees(files)
    return {module: _imports(module, files[module], trees[module], files) for module in files}


def _cycle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """One import path from `start` back to `start`, or None."""
    stack, seen = [(start, [start])], set()
    while stack:
        module, path = stack.pop()
        for target in sorted(graph[module]):
            if target == start:
                return path + [start]
            if target not in seen:
                seen.add(target)
                stack.append((target, path + [target]))
    return None


def test_no_import_circles():
    graph = _import_graph()
    circles = [" -> ".join(cycle) for module in sorted(graph) if (cycle := _cycle_through(graph, module))]
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_engine_never_imports_minigpt():
    graph = _import_graph()
    offenders = {module: sorted(t for t in targets if t.startswith("minigpt"))
                 for module, targets in graph.items() if module.startswith("autograd")}
    assert not {m: t for m, t in offenders.items() if t}


def _function_lengths():
    for module, tree in _trees(_modules()).items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                    body = body[1:]  # the docstring
                if body:
                    yield module, node.name, body[-1].end_lineno - body[0].lineno + 1


def test_no_function_longer_than_a_screen():
    long = [f"{module}.{name}: {lines} lines" for module, name, lines in _function_lengths() if lines > LONGEST_FUNCTION]
    assert not long, f"functions over {LONGEST_FUNCTION} lines of code:\n" + "\n".join(long)


def test_tensor_is_whole_in_one_class_body():
    """No `Tensor.name = ...` or `setattr(Tensor, ...)` anywhere: every method is in tensor.py's class."""
    assignments = []
    for module, tree in _trees(_modules()).items():
        for node in ast.walk(tree):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
            for target in targets:
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "Tensor":
                    assignments.append(f"{module}: Tensor.{target.attr} = ...")
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr"
                    and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "Tensor"):
                assignments.append(f"{module}: setattr(Tensor, ...)")
    assert not assignments, "\n".join(assignments)


def test_the_checks_see_a_circle_and_a_long_function(tmp_path, monkeypatch):
    """The checks above can fail: a made-up package with a circle and an 81-line function."""
    package = tmp_path / "minigpt"
    package.mkdir()
    (package / "__init__.py").write_text("from minigpt.a import f\n")
    (package / "a.py").write_text("def f():\n    from minigpt import b\n" + "    x = 1\n" * 80)
    (package / "b.py").write_text("from minigpt import a\n")
    monkeypatch.setattr(__import__(__name__), "ROOT", str(tmp_path))
    monkeypatch.setattr(__import__(__name__), "PACKAGES", ("minigpt",))
    with pytest.raises(AssertionError, match="minigpt.a -> minigpt.b -> minigpt.a"):
        test_no_import_circles()
    with pytest.raises(AssertionError, match="minigpt.a.f: 81 lines"):
        test_no_function_longer_than_a_screen()
