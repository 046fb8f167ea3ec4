"""The MongoDB target: unordered bulk writes, state in the same transaction when possible."""

from __future__ import annotations

from syncengine.targets.mongo.target import MongoTarget

__all__ = ["MongoTarget"]
