"""Conflict handling: detection against shadow state, strategies, the manual queue.

The runtime calls :class:`ConflictResolver` for every batch between mapping and target apply;
``syncengine conflicts`` (:mod:`syncengine.cli.conflicts`) reviews and resolves parked ones
through :func:`syncengine.conflicts.manual.resolve_conflict`.
"""

from syncengine.conflicts.resolver import ConflictResolver, Resolved

__all__ = ["ConflictResolver", "Resolved"]
