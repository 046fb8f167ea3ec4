"""The mappings' filters pushed into the Mongo reads: snapshot ``find``s and the change stream.

* Snapshot: every chunk's ``find`` gets the OR of the filters of the mappings that read the
  collection, ANDed with ``backfill --where``.
* Change stream: only inserts are filtered (on ``fullDocument``). Deletes carry only the key, and
  an update or a replace may make a document *leave* the filter: the mapping must see it to
  delete the target row (an update's looked-up ``fullDocument`` is the document now, not its
  after-image, so it cannot be judged at the server either).

A filter with no exact Mongo translation is not pushed (the mapping filters after reading); the
log says which. See docs/mappings.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from syncengine.sources.base import RowFilters

log = logging.getLogger("syncengine.sources.mongo")


def _pushed(name: str, filters: RowFilters, prefix: str, where: str) -> dict[str, Any] | None:
    wanted = filters(name)
    if not wanted:
        return None
    from syncengine.mappings.pushdown import NotPushable, mongo_match_any

    try:
        match = mongo_match_any(wanted, prefix)
    except NotPushable as exc:
        log.info(
            "%s: mapping filter not pushed into the %s (%s); documents are filtered after reading",
            name,
            where,
            exc,
        )
        return None
    log.info("%s: the %s reads only documents matching %s", name, where, match)
    return match


def snapshot_matches(
    names: Sequence[str], filters: RowFilters, where: Mapping[str, Any] | None
) -> dict[str, dict[str, Any] | None]:
    """Per collection, the ``$match`` its snapshot chunks are read with (None: everything)."""
    out: dict[str, dict[str, Any] | None] = {}
    for name in names:
        parts = [dict(p) for p in (_pushed(name, filters, "", "snapshot"), where) if p]
        out[name] = {"$and": parts} if len(parts) > 1 else (parts[0] if parts else None)
    return out


def stream_matches(names: Sequence[str], filters: RowFilters) -> dict[str, dict[str, Any]]:
    """Per collection with a pushable filter, a ``$match`` over its change events. Without
    filters the mapping package (sqlglot, Polars) is not imported: a ``sync --once`` with
    nothing to do would spend about a third of its CPU loading it."""
    out = {}
    for name in names:
        match = _pushed(name, filters, "fullDocument.", "change stream (inserts)")
        if match is not None:
            from syncengine.mappings.pushdown import stream_match

            out[name] = stream_match(match)
    return out
