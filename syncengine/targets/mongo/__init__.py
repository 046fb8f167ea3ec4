"""The MongoDB target: unordered bulk writes, state in the same transaction when possible.

:mod:`.factory` registers the kind; :mod:`.target` is the client. ``MongoTarget`` is imported
on first use, so loading the factory (every config load does) stays free of PyMongo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncengine.targets.mongo.target import MongoTarget

__all__ = ["MongoTarget"]


def __getattr__(name: str) -> Any:
    if name == "MongoTarget":
        from syncengine.targets.mongo.target import MongoTarget

        return MongoTarget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
