"""One table snapshotted while the pipeline's stream runs (``resnapshot``, an added table).

The stream holds the pipeline's slot and keeps applying every change after its checkpoint, so
the table's chunks are read the way a resumed snapshot reads them (:mod:`.snapshot`, low/high
watermark windows and a settled visibility horizon, :mod:`.watermarks`), except that the
windows are decoded through a *temporary* slot (``<slot>_table``, dropped by the server when
its connection ends, even after a SIGKILL). Each chunk row carries the position up to which it
contains every change of its key, so the target's position fence keeps whichever of the row
and the stream's change is newer, in either order of arrival: a key never moves back in time.

No deletes since an older position are read: the stream applies every delete after its own
checkpoint. The runtime sends the rows as full-image updates so the fence also drops a row
older than the change the stream already applied (:func:`syncengine.runtime.tableops.as_updates`).

Chunk progress is kept under :func:`syncengine.state.base.table_chunks`, apart from the
backfill's: a crash resumes at the first chunk not done. Tables without a key are refused
(their copy replaces the table at one position, which would wipe changes the stream applied
after it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import psycopg

from syncengine.changes import ChangeBatch, lsn_to_pos
from syncengine.errors import UsageError
from syncengine.sources.postgres import admin
from syncengine.sources.postgres.chunks import plan, table_shape
from syncengine.sources.postgres.pgerrors import map_error
from syncengine.sources.postgres.pushdown import snapshot_conditions
from syncengine.sources.postgres.snapshot import Snapshotter
from syncengine.sources.postgres.watermarks import VisibilityHorizon
from syncengine.state.base import table_chunks

if TYPE_CHECKING:
    from syncengine.sources.postgres.context import SourceContext


def temporary_slot(source: SourceContext) -> str:
    return f"{source.slot}_table"


async def table_snapshot(
    source: SourceContext, table: str, where: str | None, parallel: int
) -> AsyncIterator[ChangeBatch]:
    """The table's rows, chunk by chunk, reconciled with the running stream; resumes at the
    first chunk not done (its progress is in the state store)."""
    if table not in source.tables_:
        raise UsageError(
            f"{table} is not in the pipeline's tables (known: {', '.join(source.tables_)})"
        )
    namespace = table_chunks(source.pipeline)
    conn = await source.connect()
    try:
        keys = await admin.table_keys(conn, [table])
        if not keys.get(table):
            raise UsageError(
                f"{table} has no primary key or replica identity: it cannot be snapshotted "
                "while the pipeline streams",
                hint="stop the daemon and run syncengine backfill --table for it",
            )
        source.keys.update(keys)
        shape = await table_shape(conn, table, keys[table])
        wheres = await snapshot_conditions(conn, [table], source.row_filters, where)
        chunks = source.state.get_chunks(namespace, table)
        if not chunks:
            chunks = await plan(conn, shape, source.config.snapshot_chunk_rows, wheres[table])
            source.state.put_chunks(namespace, chunks)
        position = await source.current_position()
    except psycopg.Error as exc:
        raise map_error(exc, f"planning the snapshot of {table}") from exc
    finally:
        await conn.close()
    pending = [c for c in chunks if c.status != "done"]
    snapshotter = Snapshotter(source)
    snapshotter.pipeline = namespace  # where its chunks' done-marks go
    batches = snapshotter.reconcile_live(
        shape, pending, wheres[table], position, parallel, temporary_slot(source)
    )
    async for batch in batches:
        yield batch


async def visible_position(source: SourceContext) -> str | None:
    """A position every source commit below which is visible to reads that start after this
    returns (:class:`.watermarks.VisibilityHorizon`); None when a transaction outlasted the
    wait, or in incremental mode (no stream positions to fence with)."""
    if source.config.mode != "cdc":
        return None
    conn = await source.connect()
    try:
        position, exact = await VisibilityHorizon(lsn_to_pos(0)).settle(conn)
    except psycopg.Error as exc:
        raise map_error(exc, "settling a visibility horizon") from exc
    finally:
        await conn.close()
    return position if exact else None
