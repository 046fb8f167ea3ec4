"""Plugins register by name and are discovered through entry points.

Entry point groups: ``syncengine.strategies``, ``syncengine.sources``, ``syncengine.targets``.
Built-ins are declared as entry points in pyproject.toml too, so they and third-party plugins
are found the same way; ``builtins`` below is the fallback list used when the package metadata
is not installed (running from a source tree) and to answer "did you mean" without importing.
Plugins load lazily: naming one imports only that module.
"""

from __future__ import annotations

import difflib
import importlib
from functools import cache
from importlib.metadata import entry_points

from syncengine.errors import UnknownPlugin


def suggest(name: str, known: list[str]) -> str | None:
    """The closest known name, if any is reasonably close."""
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.3)
    return close[0] if close else None


def unknown_name_message(name: str, kind: str, known: list[str]) -> str:
    """``'lastwins' is not a strategy; did you mean 'local'? known: local, remote, …``"""
    hint = suggest(name, known)
    did_you_mean = f"; did you mean '{hint}'?" if hint else ";"
    return f"'{name}' is not a {kind}{did_you_mean} known: {', '.join(known)}"


class Registry:
    """Names → objects for one plugin kind, loaded on first use."""

    def __init__(self, group: str, kind: str, builtins: dict[str, str]) -> None:
        self.group = group
        self.kind = kind
        self._builtins = dict(builtins)
        self._registered: dict[str, object] = {}

    def register(self, name: str, obj: object) -> None:
        """Register in-process (tests, embedding applications)."""
        self._registered[name] = obj

    @cache  # noqa: B019 - one registry object per kind, lives for the process
    def _entry_points(self) -> dict[str, str]:
        found = dict(self._builtins)
        for ep in entry_points(group=self.group):
            found[ep.name] = ep.value
        return found

    def names(self) -> list[str]:
        ordered = list(self._builtins)
        extra = [n for n in {**self._entry_points(), **self._registered} if n not in ordered]
        return ordered + sorted(extra)

    def __contains__(self, name: str) -> bool:
        return name in self._registered or name in self._entry_points()

    def get(self, name: str) -> object:
        if name in self._registered:
            return self._registered[name]
        target = self._entry_points().get(name)
        if target is None:
            raise UnknownPlugin(unknown_name_message(name, self.kind, self.names()))
        module_name, _, attr = target.partition(":")
        obj: object = importlib.import_module(module_name)
        for part in attr.split(".") if attr else []:
            obj = getattr(obj, part)
        return obj


STRATEGIES = Registry(
    "syncengine.strategies",
    "strategy",
    {
        "local": "syncengine.strategies.builtin:LocalStrategy",
        "remote": "syncengine.strategies.builtin:RemoteStrategy",
        "merge": "syncengine.strategies.merge:MergeStrategy",
        "timestamp": "syncengine.strategies.builtin:TimestampStrategy",
        "manual": "syncengine.strategies.builtin:ManualStrategy",
    },
)
SOURCES = Registry(
    "syncengine.sources",
    "source type",
    {
        "postgres": "syncengine.sources.postgres.source:PostgresSource",
        "mongo": "syncengine.sources.mongo.source:MongoSource",
    },
)
TARGETS = Registry(
    "syncengine.targets",
    "target type",
    {
        "postgres": "syncengine.targets.postgres:PostgresTarget",
        "mongo": "syncengine.targets.mongo:MongoTarget",
        "parquet": "syncengine.targets.parquet:ParquetTarget",
    },
)
