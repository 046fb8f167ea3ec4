"""The Postgres source and target packages have no import cycle.

A cycle is how a private reach-in starts: a helper imports the class that imports it back, then
reads its internals. Every import counts as an edge (module level, inside a function, under
``TYPE_CHECKING``), otherwise a lazy import would only hide the circle.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

PACKAGES = ["syncengine.sources.postgres", "syncengine.targets.postgres"]

#: importer → imported → line numbers of the imports
Graph = dict[str, dict[str, list[int]]]


def package_modules(folder: Path, package: str) -> dict[str, Path]:
    """Every module of the package (not its subpackages), by dotted name."""
    found = {}
    for path in sorted(folder.glob("*.py")):
        found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


def imported(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: dict[str, Path]
) -> list[str]:
    """The package modules ``node`` loads (``module`` is the importer): ``from a import b``
    loads ``a.b`` if that is a module, else ``a``; ``import a.b.c`` loads the longest of
    those that is a module. Relative imports are resolved against ``module``."""
    if isinstance(node, ast.Import):
        wanted = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            parts = module.split(".") if is_package else module.split(".")[:-1]
            parts = parts[: len(parts) - node.level + 1]
            base = ".".join([*parts, base] if base else parts)
        wanted = [f"{base}.{alias.name}" for alias in node.names]
    found = []
    for name in wanted:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            found.append(name)
    return found


def import_graph(folder: Path, package: str) -> Graph:
    """Edges between the package's own modules, from every import statement anywhere in
    each module."""
    modules = package_modules(folder, package)
    graph: Graph = {name: {} for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for target in imported(node, name, path.stem == "__init__", modules):
                    if target != name:
                        graph[name].setdefault(target, []).append(node.lineno)
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan), as the modules
    in import order, the first repeated at the end."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(graph, set(group), min(group)) for group in groups]


def _cycle_in(graph: Graph, group: set[str], start: str) -> list[str]:
    path, seen = [start], {start}
    while True:
        nxt = min(n for n in graph[path[-1]] if n in group)
        if nxt in seen:
            return [*path[path.index(nxt) :], nxt]
        path.append(nxt)
        seen.add(nxt)


def describe(graph: Graph, cycle: list[str]) -> str:
    steps = [
        f"{a.rpartition('.')[2]} (line {graph[a][b][0]}) -> {b.rpartition('.')[2]}"
        for a, b in zip(cycle, cycle[1:], strict=False)
    ]
    return "; ".join(steps)


def package_folder(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.mark.parametrize("package", PACKAGES)
def test_package_has_no_import_cycle(package):
    graph = import_graph(package_folder(package), package)
    found = [describe(graph, c) for c in cycles(graph)]
    assert not found, f"import cycles in {package}: " + " | ".join(found)


def test_the_graph_holds_the_packages_real_imports():
    """The walk reads the packages (not an empty graph that trivially has no cycle): the
    source imports its snapshot module, the target its apply module."""
    source = import_graph(package_folder(PACKAGES[0]), PACKAGES[0])
    target = import_graph(package_folder(PACKAGES[1]), PACKAGES[1])
    assert f"{PACKAGES[0]}.snapshot" in source[f"{PACKAGES[0]}.source"]
    assert f"{PACKAGES[1]}.apply" in target[f"{PACKAGES[1]}.target"]
    # under TYPE_CHECKING and inside a function count too: the package's lazy PostgresTarget
    assert f"{PACKAGES[1]}.target" in target[PACKAGES[1]]


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize(
    "back",
    [
        "from pkg.a import f\n",
        "def g():\n    from pkg import a\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n",
        "import pkg.a\n",
    ],
    ids=["module-level", "lazy", "type-checking", "import-statement"],
)
def test_a_cycle_is_found_however_the_import_is_written(tmp_path, back):
    folder = _write(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "a.py": "from pkg.b import g\n\ndef f():\n    pass\n",
            "b.py": back,
            "c.py": "from pkg import a, b\n",
        },
    )
    graph = import_graph(folder, "pkg")
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.a"]]
    assert "a (line 1) -> b" in describe(graph, cycles(graph)[0])


def test_imports_from_outside_and_of_the_package_itself_are_no_cycle(tmp_path):
    folder = _write(
        tmp_path / "pkg",
        {
            "__init__.py": "from pkg.a import f\n",
            "a.py": "import json\nfrom other.pkg import b\n\ndef f():\n    import pkg.b\n",
            "b.py": "import os.path\n",
        },
    )
    graph = import_graph(folder, "pkg")
    assert graph == {"pkg": {"pkg.a": [1]}, "pkg.a": {"pkg.b": [5]}, "pkg.b": {}}
    assert cycles(graph) == []
