"""No private name crosses a module boundary in ``syncengine/``, ``mappings/`` and ``strategies/``.

A leading underscore says "only this module relies on it". Flagged: ``from m import _name``
of a project module, and ``obj._name`` (``obj`` not ``self``/``cls``) where ``_name`` is
defined by another project module and not by this one (another instance of a class of this
module may be read). Third-party internals are out of scope here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: folder → the package it installs as (setup.py mounts mappings/ and strategies/)
FOLDERS = {
    "syncengine": "syncengine",
    "mappings": "syncengine.mappings",
    "strategies": "syncengine.strategies",
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined(tree: ast.AST) -> set[str]:
    """Names a module defines anywhere: functions, classes, assigned names and attributes,
    parameters."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


def crossings(modules: dict[str, str], packages: tuple[str, ...]) -> list[str]:
    """``module: line: what`` for each private name used across modules; ``modules`` maps a
    module's name to its source, ``packages`` are the project's top-level import names."""
    trees = {name: ast.parse(text, name) for name, text in modules.items()}
    defined = {name: _defined(tree) for name, tree in trees.items()}
    found: list[tuple[str, int, str]] = []
    for name, tree in trees.items():
        elsewhere = set().union(*(d for other, d in defined.items() if other != name))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (
                node.level or (node.module or "").split(".")[0] in packages
            ):
                for alias in node.names:
                    if _private(alias.name):
                        found.append((name, node.lineno, f"import {alias.name}"))
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                owner = node.value
                if isinstance(owner, ast.Name) and owner.id in ("self", "cls"):
                    continue
                if node.attr in elsewhere and node.attr not in defined[name]:
                    found.append((name, node.lineno, ast.unparse(node)))
    return [f"{name}: {line}: {what}" for name, line, what in sorted(found)]


def project_modules() -> dict[str, str]:
    modules = {}
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            dotted = ".".join(path.relative_to(ROOT / folder).with_suffix("").parts)
            modules[f"{package}.{dotted}"] = path.read_text()
    return modules


def test_no_private_name_is_used_outside_its_module():
    modules = project_modules()
    assert len(modules) > 100  # the walk found the project
    found = crossings(modules, ("syncengine",))
    assert not found, "private names used across modules:\n" + "\n".join(found)


def test_a_private_import_and_a_reach_in_are_found():
    modules = {
        "pkg.owner": (
            "class Source:\n"
            "    def __init__(self):\n"
            "        self._keys = {}\n"
            "    def _catalog(self):\n"
            "        return self._keys\n"
            "    def same(self, other):\n"
            "        return other._keys == self._keys\n"  # same module: allowed
            "def _helper():\n"
            "    pass\n"
        ),
        "pkg.user": (
            "from pkg.owner import Source, _helper\n"
            "from json import _private_of_a_library\n"  # not the project's
            "def use(source):\n"
            "    source._catalog()\n"
            "    return source._keys, source.__class__, source._unknown\n"
        ),
    }
    assert crossings(modules, ("pkg",)) == [
        "pkg.user: 1: import _helper",
        "pkg.user: 4: source._catalog",
        "pkg.user: 5: source._keys",
    ]
