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
backfill's: a crash resumes at the first chunk not done.

A table without a key cannot be reconciled row by row: its copy replaces the target table at
one exact position C (a temporary slot's exported snapshot, :meth:`.Snapshotter.keyless_live`),
starting with a truncate that moves the table's fence to C (:mod:`syncengine.keyless`). That is
exact only if no change of the table is applied while the copy is read and written, so the
caller's ``hold`` is awaited first: it holds the table's stream changes (a pause, which the
runtime confirms and, after the last row, releases: the fence drops the held changes below C
and applies the later ones in order). Without ``hold`` such a table is refused. A crash copies
it again, whole, at a new position.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import psycopg

from syncengine.changes import ChangeBatch, lsn_to_pos
from syncengine.errors import SourceUnavailable, UsageError
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


#: awaited before a keyless table's copy position is taken: its stream changes are held from
#: then on (see the module docstring)
Hold = Callable[[], Awaitable[None]]


async def table_snapshot(
    source: SourceContext, table: str, where: str | None, parallel: int, hold: Hold | None = None
) -> AsyncIterator[ChangeBatch]:
    """The table's rows, chunk by chunk, reconciled with the running stream; resumes at the
    first chunk not done (its progress is in the state store). A keyless table (only with
    ``hold``) is copied whole at one position instead."""
    if table not in source.tables_:
        raise UsageError(
            f"{table} is not in the pipeline's tables (known: {', '.join(source.tables_)})"
        )
    namespace = table_chunks(source.pipeline)
    conn = await source.connect()
    try:
        keys = await admin.table_keys(conn, [table])
        keyless = not keys.get(table)
        if keyless and (hold is None or where is not None):
            raise UsageError(
                f"{table} has no primary key or replica identity: it is copied whole, at one "
                + ("position, so --where cannot apply" if where else "position, here refused"),
                hint="copy it whole (no --where), or stop the daemon and run syncengine "
                "backfill --table for it",
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
    snapshotter = Snapshotter(source)
    snapshotter.pipeline = namespace  # where its chunks' done-marks go
    if keyless:
        assert hold is not None
        await hold()  # no change of the table is applied from here until it is released
        async for batch in snapshotter.keyless_live(shape, chunks, wheres):
            yield batch
        return
    pending = [c for c in chunks if c.status != "done"]
    batches = snapshotter.reconcile_live(
        shape, pending, wheres[table], position, parallel, temporary_slot(source)
    )
    async for batch in batches:
        yield batch


async def visible_position(source: SourceContext, required: bool = False) -> str | None:
    """A position every source commit below which is visible to reads that start after this
    returns (:class:`.watermarks.VisibilityHorizon`); None in incremental mode (no stream
    positions to fence with), and when a transaction outlasted the wait — unless
    ``required``: then that is :class:`SourceUnavailable`, to be tried again."""
    if source.config.mode != "cdc":
        return None
    conn = await source.connect()
    try:
        position, exact = await VisibilityHorizon(lsn_to_pos(0)).settle(conn)
    except psycopg.Error as exc:
        raise map_error(exc, "settling a visibility horizon") from exc
    finally:
        await conn.close()
    if not exact and required:
        raise SourceUnavailable(
            "a source transaction outlasted the wait for a visibility horizon, so the sweep of "
            "rows the source no longer has cannot be placed yet; it is tried again",
            hint="a long-open transaction at the source (pg_stat_activity, state 'idle in "
            "transaction') holds it",
        )
    return position if exact else None
