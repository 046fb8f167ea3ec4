"""Names a package exports but imports only when first asked for (PEP 562).

A package whose ``__init__`` would otherwise import a driver, Arrow or a module that imports
the package back (a kind's config module loads :mod:`syncengine.config`) lists where each name
lives and lets Python ask :func:`lazy_exports`' function on first use. ``import syncengine``
and a config load stay fast, and no module is imported half-way through another.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(module: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``module`` that imports each name of ``homes`` (name →
    the module that defines it) on first use; any other name is an ``AttributeError``."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        return getattr(importlib.import_module(home), name)

    return __getattr__
