"""No import circles among glomkit's modules.

The graph is read from the source (the AST of every module under ``src/glomkit``), not by
importing it: an edge ``a -> b`` is a ``import glomkit.b`` / ``from glomkit.b import x`` /
relative import in module ``a``. ``from pkg import name`` is an edge to ``pkg.name`` when that is a
module, else to ``pkg`` itself. Imports under ``if TYPE_CHECKING:`` do not count (they never run).
Importing ``pkg.mod`` also runs ``pkg/__init__``, but that implicit edge is not counted: only the
names a module asks for are.

Two graphs are checked: the imports that run when a module is imported (a cycle there can fail
with a partially initialised module), and those plus the imports inside functions (the deferred
imports that hide a circle from the interpreter but not from the reader).

This test is only about cycles; rules about which layer may import which belong elsewhere.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

import glomkit

PACKAGE_ROOT = Path(glomkit.__file__).resolve().parent


def module_paths(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package) for every ``.py`` file under package ``root``."""
    out: dict[str, tuple[Path, bool]] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        if is_pkg:
            parts = parts[:-1]
        out[".".join(parts)] = (path, is_pkg)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST, deferred: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements under ``node``; those inside functions only when ``deferred``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.orelse:
                yield from _imports(ast.Module(body=[stmt], type_ignores=[]), deferred)
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if deferred:
                yield from _imports(child, deferred)
        else:
            yield from _imports(child, deferred)


@functools.lru_cache(maxsize=8)
def _parsed(root: Path) -> dict[str, tuple[ast.Module, bool]]:
    """Module -> (its syntax tree, is a package), parsed once per root."""
    return {
        mod: (ast.parse(path.read_text(encoding="utf-8"), filename=str(path)), is_pkg)
        for mod, (path, is_pkg) in module_paths(root).items()
    }


def import_graph(root: Path, deferred: bool) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (see the module docstring)."""
    modules = _parsed(root)
    top = root.name

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, (tree, is_pkg) in modules.items():
        for node in _imports(tree, deferred):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                if node.level:
                    base = mod if is_pkg else mod.rpartition(".")[0]
                    for _ in range(node.level - 1):
                        base = base.rpartition(".")[0]
                    source = f"{base}.{node.module}" if node.module else base
                else:
                    source = node.module or ""
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    targets.append(sub if sub in modules else source)
            for target in targets:
                if target.split(".")[0] != top:
                    continue
                resolved = resolve(target)
                if resolved is not None and resolved != mod:
                    graph[mod].add(resolved)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return sorted(found)


def _describe(graph: dict[str, set[str]], comp: list[str]) -> str:
    members = set(comp)
    edges = [f"{a} -> {b}" for a in comp for b in sorted(graph[a] & members)]
    return "\n    ".join([f"{len(comp)} modules:", *edges])


def test_the_graph_sees_the_package() -> None:
    graph = import_graph(PACKAGE_ROOT, deferred=True)
    assert "glomkit.io.annotations" in graph and "glomkit.io.imagescope" in graph["glomkit.io.annotations"]
    assert len(graph) > 50


def test_no_import_cycles_when_modules_are_imported() -> None:
    graph = import_graph(PACKAGE_ROOT, deferred=False)
    found = cycles(graph)
    assert not found, "import circles among module-level imports:\n  " + "\n  ".join(
        _describe(graph, c) for c in found
    )


def test_no_import_cycles_counting_imports_inside_functions() -> None:
    graph = import_graph(PACKAGE_ROOT, deferred=True)
    found = cycles(graph)
    assert not found, "import circles (counting imports inside functions):\n  " + "\n  ".join(
        _describe(graph, c) for c in found
    )


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_finds_circles(tmp_path: Path) -> None:
    pkg = tmp_path / "toy"
    _write(
        pkg,
        {
            "__init__.py": "from toy.sub import z\nGLOBAL = 1\n",
            "a.py": "from toy.b import f\n",
            "b.py": "def f():\n    from toy import a\n",
            "c.py": "from . import d\n",
            "d.py": "import toy.c\n",
            "e.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toy.f import g\n",
            "f.py": "from toy.e import x\n",
            "sub/__init__.py": "from toy import GLOBAL\n",
            "sub/g.py": "from ..sub import h\n",
            "sub/h.py": "from toy.sub.g import y\n",
        },
    )
    eager = import_graph(pkg, deferred=False)
    assert eager["toy.a"] == {"toy.b"} and eager["toy.b"] == set()
    assert eager["toy.e"] == set()  # under TYPE_CHECKING
    assert cycles(eager) == [["toy", "toy.sub"], ["toy.c", "toy.d"], ["toy.sub.g", "toy.sub.h"]]
    assert cycles(import_graph(pkg, deferred=True)) == [
        ["toy", "toy.sub"],
        ["toy.a", "toy.b"],
        ["toy.c", "toy.d"],
        ["toy.sub.g", "toy.sub.h"],
    ]


def test_cycles_of_a_chain_and_a_ring() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
