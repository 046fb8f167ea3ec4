"""One collection snapshotted while the pipeline's change stream runs (``resnapshot``, an added
collection): the Mongo form of the watermark reconciliation in
:mod:`syncengine.sources.postgres.watermarks`.

Mongo has no logical messages to write into the oplog, and no table goes into the user's
database, so a window is bounded by cluster times instead: ``T0`` is noted before a group of
``parallel`` chunks is read, ``T1`` after, and a second change stream on the collection, opened
at ``T0``, lists every ``_id`` changed from ``T0`` until it has caught up past ``T1``. A
document of a key that no event touched in the window is the key's state at ``T0`` exactly:
its row carries ``T0``, and the position fence keeps it or the stream's later change, whichever
is newer, in either order of arrival. A key changed in the window may have been read before or
after its change; under ``full_document: updateLookup`` (every update row is the whole document
as looked up) its row is dropped and the running stream brings its state (DBLog's rule), so it
never moves back in time. With post-images the stream's update rows may be partial, so the row
is kept at ``T0`` (a replayed change may then briefly show an older value; it converges).
A drop or rename of the collection inside the window drops the group's rows (the stream empties
the target table).

Chunk progress is kept under :func:`syncengine.state.base.table_chunks`; a chunk is marked done
once its group's rows were taken and the next batch asked for (i.e. after the commit).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
from pymongo.errors import PyMongoError

from syncengine.changes import ChangeBatch
from syncengine.codecs.bson_arrow import decode_documents
from syncengine.errors import UsageError
from syncengine.mongoclient import close_stream
from syncengine.sources.mongo.errors import map_error
from syncengine.sources.mongo.positions import position_time
from syncengine.sources.mongo.pushdown import snapshot_matches
from syncengine.sources.mongo.snapshot import encode_bound, parse_where, plan_chunks, scan_chunks
from syncengine.state.base import Chunk, table_chunks

if TYPE_CHECKING:
    from syncengine.sources.mongo.source import MongoSource

log = logging.getLogger("syncengine.sources.mongo")

#: events that change every document of the collection
_WHOLE = {"drop", "rename", "dropDatabase", "invalidate"}
#: milliseconds a window's change stream waits for events in one poll
_POLL_MS = 200


class KeyWindow:
    """The ``_id``s changed in one collection from ``start`` until caught up past a time."""

    def __init__(self, source: MongoSource, name: str, start: str) -> None:
        self.source = source
        self.name = name
        self.start = start
        self.changes: Any = None

    async def open(self) -> None:
        match = {"$match": {"$or": [{"ns.coll": self.name}, {"operationType": "dropDatabase"}]}}
        self.changes = await self.source.db.watch(
            [match], start_at_operation_time=position_time(self.start), max_await_time_ms=_POLL_MS
        )

    async def close(self) -> None:
        if self.changes is not None:
            await close_stream(self.changes)

    async def changed(self) -> tuple[list[Any], bool]:
        """(``_id``s changed since ``start``, whether the whole collection changed), read until
        the first empty poll, which the caller starts after noting the window's end."""
        ids: list[Any] = []
        whole = False
        while True:
            event = await self.changes.try_next()
            if event is None:
                return ids, whole
            if event.get("operationType") in _WHOLE:
                whole = True
            key = event.get("documentKey") or {}
            if "_id" in key:
                ids.append(key["_id"])


def without(batch: ChangeBatch, ids: list[Any]) -> ChangeBatch:
    """``batch`` without the rows of ``ids`` (compared as text: both sides are decoded by the
    same BSON → Arrow codec, so an ObjectId is its hex string on both)."""
    if not ids or not batch.num_rows:
        return batch
    wanted = decode_documents([{"_id": v} for v in ids]).table.column("_id")
    try:
        mine = pc.cast(batch.data.column("_id"), pa.string())
        theirs = pc.cast(wanted, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        log.warning("%s: _id values cannot be compared as text: rows kept", batch.table)
        return batch
    keep = pc.invert(pc.fill_null(pc.is_in(mine, value_set=theirs.combine_chunks()), False))
    return ChangeBatch(batch.table, batch.data.filter(keep), batch.key, batch.meta)


async def table_snapshot(
    source: MongoSource, name: str, where: str | None, parallel: int
) -> AsyncIterator[ChangeBatch]:
    """The collection's documents, chunk group by chunk group, reconciled with the running
    stream; resumes at the first chunk not done."""
    if name not in source.config.collections:
        raise UsageError(
            f"{name} is not in the pipeline's collections "
            f"(known: {', '.join(source.config.collections)})"
        )
    try:
        match = parse_where(where)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    namespace = table_chunks(source.pipeline)
    wheres = snapshot_matches([name], source.row_filters, match)
    try:
        chunks = source.state.get_chunks(namespace, name)
        if not chunks:
            bounds = await plan_chunks(source.db[name], source.config.snapshot_chunk_docs)
            chunks = [
                Chunk(name, i, encode_bound(lo), encode_bound(hi))
                for i, (lo, hi) in enumerate(bounds)
            ]
            source.state.put_chunks(namespace, chunks)
        pending = [c for c in chunks if c.status != "done"]
        width = max(1, parallel)
        for first in range(0, len(pending), width):
            group = pending[first : first + width]
            async for batch in _window(source, name, group, wheres, width):
                yield batch
            source.state.put_chunks(namespace, [replace(c, status="done") for c in group])
    except PyMongoError as exc:
        raise map_error(exc, f"snapshot of {name}") from exc


async def _window(
    source: MongoSource,
    name: str,
    group: list[Chunk],
    wheres: dict[str, dict[str, Any] | None],
    width: int,
) -> AsyncIterator[ChangeBatch]:
    """The rows of ``group``, read inside one window, without the keys changed in it."""
    start = await source.current_position()
    window = KeyWindow(source, name, start)
    await window.open()
    try:
        held = [
            batch
            async for batch in scan_chunks(
                {name: source.db[name]},
                group,
                position=start,
                wheres=wheres,
                parallel=width,
                batch_rows=source.batch.max_rows,
                mark_done=lambda chunk: None,  # the caller marks the group once it was taken
            )
        ]
        await source.current_position()  # T1: the window's poll below starts after it
        ids, whole = await window.changed()
    finally:
        await window.close()
    if whole:
        log.info(
            "%s: %s was dropped or renamed while read: left to the stream", source.pipeline, name
        )
        return
    for batch in held:
        yield without(batch, ids) if source.current else batch
