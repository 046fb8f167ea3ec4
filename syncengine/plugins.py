"""Plugins register by name and are discovered through entry points.

Entry point groups: ``syncengine.strategies`` (a strategy class), ``syncengine.sources`` and
``syncengine.targets`` (a kind's factory: :class:`~syncengine.sources.factory.SourceFactory`,
:class:`~syncengine.targets.factory.TargetFactory`). Built-ins are declared as entry points in
pyproject.toml too, so they and third-party plugins are found the same way; ``builtins`` below
is the fallback list used when the package metadata is not installed (running from a source
tree) and to answer "did you mean" without importing (``tests/unit/test_plugins_registry.py``
keeps the two lists equal). Plugins load lazily: naming one imports only that module, and a
kind's factory module imports no driver (docs/extending.md).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from syncengine.errors import UnknownPlugin

if TYPE_CHECKING:
    from syncengine.sources.factory import SourceFactory
    from syncengine.targets.factory import TargetFactory


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
        self._listeners: list[Callable[[], None]] = []

    def register(self, name: str, obj: object) -> None:
        """Register in-process (tests, embedding applications); what is built from the
        registry (the config models) is rebuilt."""
        self._registered[name] = obj
        for listener in self._listeners:
            listener()

    def unregister(self, name: str) -> None:
        """Undo :meth:`register` (an entry point or built-in of that name shows again)."""
        if self._registered.pop(name, None) is not None:
            for listener in self._listeners:
                listener()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after every in-process (un)registration."""
        self._listeners.append(listener)

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
        "postgres": "syncengine.sources.postgres.factory:factory",
        "mongo": "syncengine.sources.mongo.factory:factory",
    },
)
TARGETS = Registry(
    "syncengine.targets",
    "target type",
    {
        "postgres": "syncengine.targets.postgres.factory:factory",
        "mongo": "syncengine.targets.mongo.factory:factory",
        "parquet": "syncengine.targets.parquet.factory:factory",
    },
)


class BrokenPlugin(UnknownPlugin):
    """A registered name whose object cannot be loaded or is not what its group needs."""


def _checked(
    registry: Registry, name: str, protocol: type, base: type, required: tuple[str, ...] = ()
) -> Any:
    """The factory registered as ``name``: loaded, and checked to have the protocol's members,
    to answer to the name it is registered under (its config's ``type:``) and to have a config
    model derived from ``base`` that implements ``base``'s ``required`` methods."""
    try:
        found = registry.get(name)
    except UnknownPlugin:
        raise
    except Exception as exc:  # noqa: BLE001 - a third party's import error, said in one line
        raise BrokenPlugin(
            f"{registry.kind} '{name}' is registered but cannot be loaded: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(found, protocol):
        raise BrokenPlugin(
            f"{registry.kind} '{name}' is registered with {found!r}, which is not a "
            f"{protocol.__name__} (name, config, create, preflight; docs/extending.md)"
        )
    if getattr(found, "name", None) != name:
        raise BrokenPlugin(
            f"{registry.kind} '{name}' is registered with a factory named "
            f"'{getattr(found, 'name', None)}'; the entry point's name and the factory's "
            "must agree"
        )
    config = getattr(found, "config", None)  # the protocol check above guarantees it
    if not (isinstance(config, type) and issubclass(config, base)):
        raise BrokenPlugin(
            f"{registry.kind} '{name}': its config model {config!r} does not derive from "
            f"syncengine.config.base.{base.__name__}"
        )
    missing = [m for m in required if getattr(config, m) is getattr(base, m)]
    if missing:
        raise BrokenPlugin(
            f"{registry.kind} '{name}': its config model {config.__name__} does not implement "
            f"{', '.join(missing)}"
        )
    return found


def source_factory(name: str) -> SourceFactory:
    """The factory of source kind ``name`` (UnknownPlugin with "did you mean" if none)."""
    from syncengine.config.base import SourceConfigBase
    from syncengine.sources.factory import SourceFactory

    factory: SourceFactory = _checked(
        SOURCES, name, SourceFactory, SourceConfigBase, ("table_names",)
    )
    return factory


def target_factory(name: str) -> TargetFactory:
    """The factory of target kind ``name`` (UnknownPlugin with "did you mean" if none)."""
    from syncengine.config.base import TargetConfigBase
    from syncengine.targets.factory import TargetFactory

    factory: TargetFactory = _checked(TARGETS, name, TargetFactory, TargetConfigBase)
    return factory
