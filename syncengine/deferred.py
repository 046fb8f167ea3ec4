"""Polars, imported when first used rather than when the engine starts.

Importing Polars costs about 0.14 s of CPU, and a binary-passthrough backfill (Postgres →
Postgres, identity mapping) never builds a frame: its rows go source COPY → target COPY
unread. The modules on that path that use Polars elsewhere (batch compaction, decoding,
the Postgres target's apply) therefore name it through :data:`polars`, which stands for the
module until an attribute is first read, then imports it and keeps each attribute it handed
out, so later reads are plain attribute lookups. Type checkers see the real module::

    if TYPE_CHECKING:
        import polars as pl
    else:
        from syncengine.deferred import polars as pl

``importlib.import_module`` takes the import lock, so threads that reach Polars first at the
same time (the Mongo source decodes in a worker thread) all get the whole module.
"""

from __future__ import annotations

import importlib
from typing import Any


class Deferred:
    """A module imported at its first attribute read."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):  # copy, pickle and inspect probe dunders: not the module's
            raise AttributeError(attr)
        value = getattr(importlib.import_module(self._name), attr)
        setattr(self, attr, value)
        return value

    def __repr__(self) -> str:
        return f"<deferred module {self._name}>"


polars = Deferred("polars")
