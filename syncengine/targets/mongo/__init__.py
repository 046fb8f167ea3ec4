"""The MongoDB target: unordered bulk writes, state in the same transaction when possible.

:mod:`.factory` registers the kind; :mod:`.target` is the client. ``MongoTarget`` is imported
on first use, so loading the factory (every config load does) stays free of PyMongo.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncengine.lazy import lazy_exports

if TYPE_CHECKING:
    from syncengine.targets.mongo.target import MongoTarget

__all__ = ["MongoTarget"]

__getattr__ = lazy_exports(__name__, {"MongoTarget": "syncengine.targets.mongo.target"})
