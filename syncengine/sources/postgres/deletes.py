"""Deletes since the snapshot position, sent with a reconciled snapshot's rows (no ghost rows).

A resumed snapshot (or one on an existing slot) reads its chunks later than the snapshot
position P0 the stream restarts from. A key updated and then deleted in between has no row in
its chunk and nothing in the target's shadow, so the replay's older update would insert it (a
ghost row) until the replay reaches the delete. Each delete made since P0 is therefore sent
with the snapshot as a change at its own position: the target keeps a tombstone at that
position and its position fence drops the replay's older changes of the key. It is the
replay's own delete applied early, so it is right whatever the target holds for the key: the
fence drops it where the target has a newer row (read after a re-insert), a later change (a
re-insert) still applies, and a row read before the delete is deleted.

Positions are ``<commit LSN>.<n>`` like the stream's, but ``n`` counts only the transaction's
deletes, so a tombstone sits at or below its delete's own position in the replay (which counts
every row): it never fences a change made after its delete.

* :func:`deletes_since`: P0 up to where the watermark reader starts, read from the slot through
  a second publication that publishes only deletes (``<publication>_deletes``), so the server
  sends no inserts or updates (shipping all WAL retained since P0 took seconds). It
  confirms nothing: the slot does not move. Decoding looks publications up as of the WAL it
  decodes, so that publication must be older than P0: :meth:`PostgresSource.open` creates it
  with the main one, before any slot, and the snapshot records that it did
  (:data:`DETAIL`); a snapshot begun before it existed reads through the main publication
  and drops the rest in Python (slower, same result).
* :class:`DeleteLog`: the deletes the watermark reader decodes after that, handed out after
  each group of chunks (after the group's rows: a tombstone for a delete the read did not see
  must not come before the row, or the row would bring the key back until the replay).

Not covered: truncates (a truncated table's rows are not known any more), keyless tables
(their chunks are read again from the start anyway).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING

import psycopg

from syncengine.changes import ChangeBatch
from syncengine.sources.postgres import admin
from syncengine.sources.postgres import pgoutput as po
from syncengine.sources.postgres.assembler import ChangeAssembler
from syncengine.sources.postgres.replication import ReplicationStream
from syncengine.sources.postgres.streaming import stream_changes

if TYPE_CHECKING:
    from syncengine.sources.postgres.context import SourceContext

log = logging.getLogger("syncengine.sources.postgres")

#: what a reconciled snapshot's delete batches carry in ``meta``
META = {"snapshot": True, "deletes": True}
#: the snapshot checkpoint's detail naming the delete publication, when it predates the slot
#: position (see the module docstring)
DETAIL = "deletes"


def delete_publication(source: SourceContext) -> str:
    return f"{source.publication}_deletes"


async def ensure_delete_publication(source: SourceContext, conn: psycopg.AsyncConnection) -> str:
    name = delete_publication(source)
    owned = source.config.publication is None
    await admin.ensure_publication(conn, name, source.tables_, publish="delete", exact=owned)
    return name


class DeletesOnly(ChangeAssembler):
    """An assembler that keeps deletes only (inserts, updates and truncates are dropped)."""

    def feed(self, msg: po.PgOutputMessage) -> list[ChangeBatch]:
        if isinstance(msg, po.Insert | po.Update | po.Truncate):
            return []
        return super().feed(msg)


def keep(batches: Iterable[ChangeBatch], tables: set[str]) -> list[ChangeBatch]:
    """Rows of ``tables`` (keyed, snapshotted ones), as snapshot batches without resumes."""
    return [
        ChangeBatch(b.table, b.data, b.key, dict(META))
        for b in batches
        if b.num_rows and b.table in tables
    ]


async def deletes_since(
    source: SourceContext, publication: str, start: int, until: int, tables: set[str]
) -> AsyncIterator[ChangeBatch]:
    """Deletes of ``tables`` committed from ``start`` up to the first commit at or after
    ``until``, in ``max_rows`` batches, read from the slot through ``publication`` (which
    must be older than ``start``) without moving it."""
    conn = await source.catalog()
    assembler = DeletesOnly(source.batch.max_rows, source.keys, source.tables_[0])

    def confirm_nothing(stream: ReplicationStream | None) -> None:
        # The pipeline's checkpoint may be behind ``start`` (a re-backfill): a flush report
        # would let the server drop changes not applied yet. Postgres ignores a flush of 0.
        if stream is not None:
            stream.flushed = 0

    sent = 0
    try:
        async for batch in stream_changes(
            source.connect,
            source.slot,
            publication,
            start,
            until,
            assembler,
            source.batch.max_wait,
            0.0,
            confirm_nothing,
        ):
            for kept in keep([batch], tables):
                sent += kept.num_rows
                yield kept
    finally:
        await admin.wait_slot_idle(conn, source.slot)  # the watermark reader uses it next
    log.info("%s: sent %d deletes made since the snapshot position", source.pipeline, sent)


class DeleteLog:
    """Deletes decoded by the watermark reader, assembled into batches until taken."""

    def __init__(self, source: SourceContext) -> None:
        self.assembler = DeletesOnly(source.batch.max_rows, source.keys, source.tables_[0])
        self.ready: list[ChangeBatch] = []

    def feed(self, msg: po.PgOutputMessage) -> None:
        self.ready.extend(b for b in self.assembler.feed(msg) if b.num_rows)

    def take(self, tables: set[str]) -> list[ChangeBatch]:
        """Every delete decoded so far (of ``tables``); the log is empty afterwards."""
        ready, self.ready = self.ready, []
        return keep([*ready, *self.assembler.flush()], tables)
