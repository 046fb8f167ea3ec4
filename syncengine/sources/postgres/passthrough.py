"""Snapshot chunks passed through as binary COPY, never decoded in Python.

When a chunk's rows go unchanged into a Postgres table of the same column types (an identity
mapping under ``remote``; the runtime decides, see :mod:`syncengine.runtime.passthrough`),
decoding them into Arrow and encoding them again is all cost and no use. The snapshot worker
then runs ``COPY (SELECT … <chunk range>) TO STDOUT (FORMAT binary)`` on its snapshot
transaction and hands the bytes, in pieces of about 1 MB, to a
:class:`~syncengine.passthrough.ChunkSink` (format :data:`BINARY_COPY`), which writes
them with ``COPY … FROM STDIN (FORMAT binary)`` and commits the chunk's done-mark in the same
target transaction. The source and target servers work at the same time (the pipe never holds
more than a piece), and each worker has its own source transaction and target connection.

A sink may refuse a chunk (a row the target rejects: a constraint, a duplicate key): it rolls
its transaction back and the worker reads the chunk again the ordinary way (CSV → Arrow →
mapping → apply), which bisects bad rows out to dead letters. Only exported-snapshot chunks pass
through: reconciled chunks (a resumed snapshot) carry per-row positions that the target's shadow
must record, so that its position fence drops the replay's older changes of their keys.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TypeAlias

import psycopg

from syncengine.changes import ChangeBatch
from syncengine.passthrough import ChunkSink, Write
from syncengine.sources.postgres import deadline
from syncengine.sources.postgres.chunks import (
    TableShape,
    chunk_query,
    csv_to_text_columns,
    read_batch,
)
from syncengine.sources.postgres.copyout import copy_out_into
from syncengine.state.base import Chunk
from syncengine.state.protocols import SnapshotProgress

log = logging.getLogger("syncengine.sources.postgres")

#: the format of this source's raw chunks (:mod:`syncengine.passthrough`): the rows of
#: ``COPY … TO STDOUT (FORMAT binary)``, text in the source session's ``client_encoding``,
#: described by a :class:`~.chunks.TableShape`
BINARY_COPY = "postgres-binary-copy"

#: where chunks of this format go (a Postgres target)
CopySink: TypeAlias = ChunkSink[TableShape]


async def pipe_chunk(
    conn: psycopg.AsyncConnection,
    sink: CopySink,
    shape: TableShape,
    chunk: Chunk,
    where: str | None,
) -> int | None:
    """Pass one chunk through ``sink`` on ``conn``'s snapshot transaction: the rows copied,
    or None when the sink refused them (``conn`` is idle again either way, so the chunk can
    be read the ordinary way). The pipe is bounded by progress: data must keep moving.
    Generated columns are not copied: the sink takes a table only where it generates them
    too."""
    shape = shape.stored()
    query = chunk_query(shape, chunk, where, "binary")
    encoding = conn.pgconn.parameter_status(b"client_encoding") or b"UTF8"

    async def feed(write: Write) -> None:
        async with deadline.progress(conn, "reading rows (binary COPY)") as alive:
            await copy_out_into(conn, query, alive, write)

    return await sink.copy_chunk(shape, chunk, encoding, feed)


def copied_batch(shape: TableShape, chunk: Chunk, rows: int, position: str) -> ChangeBatch:
    """The zero-row batch that tells the consumer a chunk was copied and committed
    (``meta["copied"]``: its rows), so rows, progress and metrics are still counted."""
    empty = csv_to_text_columns(b"", shape.columns)
    meta = {"snapshot": True, "chunk": chunk.chunk, "copied": rows}
    return read_batch(shape, empty, position, meta)


async def confirmed(
    state: SnapshotProgress, pipeline: str, sink: CopySink | None, chunks: list[Chunk]
) -> list[Chunk]:
    """``chunks`` with those the target marked done marked done here too: a process killed
    between a chunk's target commit and its mark in the state store does not copy it again
    (nor could it: its keys are in the target now)."""
    if sink is None or not chunks:
        return chunks
    found = await sink.done_chunks(sorted({c.table for c in chunks}))
    done = {(c.table, c.chunk, c.lower, c.upper): c for c in found}
    settled = [
        replace(c, status="done", rows=done[c.table, c.chunk, c.lower, c.upper].rows)
        for c in chunks
        if c.status != "done" and (c.table, c.chunk, c.lower, c.upper) in done
    ]
    if settled:
        state.put_chunks(pipeline, settled)
        log.info("%s: %d chunk(s) found committed at the target", pipeline, len(settled))
    marked = {(c.table, c.chunk): c for c in settled}
    return [marked.get((c.table, c.chunk), c) for c in chunks]


async def closing(
    batches: AsyncIterator[ChangeBatch], sink: CopySink
) -> AsyncIterator[ChangeBatch]:
    """``batches``, closing ``sink`` (its target connections) when they end or are dropped."""
    try:
        async for batch in batches:
            yield batch
    finally:
        aclose = getattr(batches, "aclose", None)
        if aclose is not None:
            await aclose()
        await sink.close()
