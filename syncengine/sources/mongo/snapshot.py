"""Consistent, resumable, parallel snapshot of Mongo collections.

1. Note the cluster time *before* reading (the stream later opens at it with
   ``startAtOperationTime``, so every write after the note is replayed on top of the copy; replay
   converges because stream rows are full images, deletes or partial updates of what the scan
   may already show).
2. Split each collection into ``_id`` ranges: boundaries are quantiles of a ``$sample`` of
   ``_id``s (cheap on real MongoDB: a random cursor, no collection sort). Range queries only match
   one BSON type class, so a collection whose smallest and largest ``_id`` differ in type is read
   as one chunk.
3. Scan the ranges ``parallel`` at a time with ``find_raw_batches``; raw BSON is decoded to Arrow
   column-wise in a worker thread while the cursor already fetches the next raw batch
   (:func:`read_ahead`), so the server's scan and the decoding overlap instead of taking turns.
4. Each range is read at read concern ``majority`` *after* the noted cluster time (a causally
   consistent session whose operation time is the note: ``afterClusterTime``). A URI's
   ``readPreference=secondary`` sends the scans to a secondary, which may lag: read as it
   stood, the writes between its state and the note would be in neither the copy nor the
   stream (which starts at the note). A ``local`` read could also copy a write a failover
   later rolls back, which the stream (majority-committed events only) would never undo.

Chunk progress lives in the state store. A chunk is marked done only when the consumer comes back
for the batch after its last one, i.e. after the target committed it; an interrupted snapshot
rescans only the chunks not done, and keeps the cluster time noted by the first attempt (stored
as the checkpoint ``<stream>:snapshot``) so the stream replays everything since the oldest read.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import math
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from bson import Decimal128, ObjectId, json_util
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.read_concern import ReadConcern

from syncengine.changes import AT_RESUME, ChangeBatch
from syncengine.codecs.bson_arrow import decode_documents
from syncengine.sources.mongo.batches import snapshot_batch
from syncengine.sources.mongo.positions import as_datetime, position_time
from syncengine.state.base import Chunk

SAMPLES_PER_CHUNK = 20
#: what the scans read: majority-committed data, never older than the noted cluster time
_MAJORITY = ReadConcern("majority")
_BOUND = json_util.JSONOptions(json_mode=json_util.JSONMode.CANONICAL, tz_aware=True)


def _type_class(value: Any) -> str | None:
    """Range-splittable BSON type class of an ``_id`` (None: read as one chunk)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float | Decimal128):
        return "number"
    for cls, name in ((str, "string"), (ObjectId, "objectId"), (_dt.datetime, "date")):
        if isinstance(value, cls):
            return name
    return None


def _sort_key(value: Any) -> Any:
    return value.to_decimal() if isinstance(value, Decimal128) else value


def encode_bound(value: Any) -> str | None:
    return None if value is None else json_util.dumps({"v": value}, json_options=_BOUND)


def decode_bound(text: str | None) -> Any:
    return None if text is None else json_util.loads(text, json_options=_BOUND)["v"]


def quantile_bounds(ids: Sequence[Any], chunks: int) -> list[Any]:
    """``chunks - 1`` distinct split points from a sample of ``_id``s (sorted, deduplicated)."""
    ordered = sorted({_sort_key(v): v for v in ids}.items())
    if chunks <= 1 or len(ordered) < 2:
        return []
    step = len(ordered) / chunks
    picks = {int(i * step) for i in range(1, chunks)}
    return [ordered[i][1] for i in sorted(picks) if 0 < i < len(ordered)]


async def plan_chunks(
    coll: AsyncCollection[dict[str, Any]], chunk_docs: int, count: int | None = None
) -> list[tuple[Any, Any]]:
    """``[(lower, upper), …]`` covering every ``_id``; None is unbounded. ``count``: the
    collection's estimated size when the caller has just read it."""
    if count is None:
        count = await coll.estimated_document_count()
    wanted = math.ceil(count / chunk_docs) if count else 1
    if wanted <= 1:
        return [(None, None)]
    first = await coll.find_one({}, {"_id": 1}, sort=[("_id", 1)])
    last = await coll.find_one({}, {"_id": 1}, sort=[("_id", -1)])
    if first is None or last is None:
        return [(None, None)]
    kind = _type_class(first["_id"])
    if kind is None or kind != _type_class(last["_id"]):
        return [(None, None)]
    size = min(count, wanted * SAMPLES_PER_CHUNK)
    cursor = await coll.aggregate([{"$sample": {"size": size}}, {"$project": {"_id": 1}}])
    sample = [d["_id"] async for d in cursor if _type_class(d["_id"]) == kind]
    points = quantile_bounds(sample, wanted)
    edges = [None, *points, None]
    return list(zip(edges[:-1], edges[1:], strict=True))


def chunk_filter(chunk: Chunk, where: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``find`` filter of one chunk: its ``_id`` range AND ``where``."""
    bounds: dict[str, Any] = {}
    lower, upper = decode_bound(chunk.lower), decode_bound(chunk.upper)
    if lower is not None:
        bounds["$gte"] = lower
    if upper is not None:
        bounds["$lt"] = upper
    parts = [p for p in ({"_id": bounds} if bounds else None, dict(where or {})) if p]
    if not parts:
        return {}
    return parts[0] if len(parts) == 1 else {"$and": parts}


async def scan_chunks(
    collections: Mapping[str, AsyncCollection[dict[str, Any]]],
    chunks: Sequence[Chunk],
    *,
    position: str,
    wheres: Mapping[str, Mapping[str, Any] | None],
    parallel: int,
    batch_rows: int,
    mark_done: Callable[[Chunk], None],
    at_resume: bool = False,
) -> AsyncIterator[ChangeBatch]:
    """``r`` batches of every chunk, ``parallel`` chunks at a time; ``mark_done(chunk)`` runs
    once the consumer has taken the chunk's last batch and asked for more. ``wheres``: per
    collection, a ``$match`` its chunks are read with (absent or None: every document).
    ``at_resume``: the stream starts at ``position`` (batch meta ``at_resume``)."""
    at = position_time(position)
    ts = as_datetime(at)
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=max(2, parallel * 2))
    gate = asyncio.Semaphore(max(1, parallel))

    async def worker(chunk: Chunk) -> None:
        try:
            async with gate:
                coll = collections[chunk.table]
                rows = 0
                where = chunk_filter(chunk, wheres.get(chunk.table))
                async with coll.database.client.start_session(causal_consistency=True) as session:
                    session.advance_operation_time(at)
                    cursor = coll.with_options(read_concern=_MAJORITY).find_raw_batches(
                        where, batch_size=batch_rows, session=session
                    )
                    async for raw in read_ahead(cursor):
                        decoded = await asyncio.to_thread(decode_documents, [raw])
                        if decoded.table.num_rows:
                            rows += decoded.table.num_rows
                            meta: dict[str, object] = {"chunk": chunk.chunk}
                            if at_resume:
                                meta[AT_RESUME] = True
                            batch = snapshot_batch(chunk.table, decoded, position, ts, meta)
                            await queue.put(batch)
                await queue.put(replace(chunk, status="done", rows=rows))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            await queue.put(exc)

    tasks = [asyncio.create_task(worker(c)) for c in chunks]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, Chunk):
                mark_done(item)
                remaining -= 1
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task


async def read_ahead(batches: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """The items of ``batches``, the next one always being fetched while the caller works on
    the current one (one item ahead: memory stays bounded by two batches)."""
    source = aiter(batches)

    async def fetch() -> Any:
        return await anext(source)

    pending = asyncio.ensure_future(fetch())
    try:
        while True:
            try:
                item = await pending
            except StopAsyncIteration:
                return
            pending = asyncio.ensure_future(fetch())
            yield item
    finally:
        if not pending.done():
            pending.cancel()
        await asyncio.wait({pending})
        if not pending.cancelled():
            pending.exception()  # retrieved: nobody wants the item any more


def parse_where(where: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A ``$match`` document: a mapping, its (extended) JSON text, or a SQL predicate that
    :func:`syncengine.mappings.to_mongo_match` translates."""
    if where is None or isinstance(where, Mapping):
        return dict(where) if where else None
    text = where.strip()
    if text.startswith("{"):
        loaded = json_util.loads(text)
        if not isinstance(loaded, dict):
            raise ValueError("a Mongo snapshot filter must be a JSON object")
        return loaded
    from syncengine.mappings import to_mongo_match  # the SQL parser loads only when needed

    match = to_mongo_match(text)
    if match is None:
        raise ValueError(
            f"the filter {text!r} cannot be translated to a Mongo query; "
            'write it as a $match document, e.g. {"status": "open"}'
        )
    return match
