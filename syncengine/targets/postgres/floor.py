"""The stored checkpoint as the position fence of in-order changes (measured in
docs/benchmarks-findings.md, "the checkpoint as the fence").

A Postgres target commits the checkpoint with the data and a source resumes strictly after it,
so a change at or below the stored checkpoint has been applied already: it is dropped here,
before staging (vectorized, nothing sent to the server). Per-key fence rows are then needed
only where a replay can reach them: positions above the checkpoint committed with them (the
parts of a source transaction too big to hold, committed before its end; snapshot rows, whose
positions a re-backfill can put above a checkpoint moved back). The pipeline's *mark* in
``_syncengine.meta`` is the highest position any shadow row of it was written with; while it
is at or below the stored checkpoint no shadow row can drop anything the checkpoint does not,
and the per-key probe of the shadow is skipped altogether.

Positions compare as byte strings (``COLLATE "C"`` on the server): the order every source's
position format is built for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from syncengine.changes import OP_READ, OP_TRUNCATE
from syncengine.targets.base import Checkpoint, ServerFence, TableWrite
from syncengine.targets.postgres.ddl import state_table


def mark_name(pipeline: str) -> str:
    """The ``_syncengine.meta`` row holding ``pipeline``'s mark."""
    return f"shadow_mark/{pipeline}"


@dataclass(frozen=True)
class Floors:
    """What one apply transaction read: the stored checkpoint of the fenced writes' stream and
    the pipeline's mark (``""``: no shadow row holds a position; None: not read, so every
    fenced write probes as it always did)."""

    stream: str | None = None
    stored: str | None = None
    mark: str | None = None

    def floor(self, request: ServerFence | None) -> str | None:
        """Changes at or below this position are dropped (None: no floor)."""
        if request is None or not request.enforce or request.stream is None:
            return None
        return self.stored if request.stream == self.stream else None

    def probe(self, request: ServerFence | None) -> bool:
        """Whether a shadow row can drop a change the floor keeps: one above the floor."""
        if request is None or request.stream != self.stream or self.mark is None:
            return True
        floor = self.floor(request)
        return bool(self.mark) and (floor is None or self.mark > floor)

    def record_above(
        self, request: ServerFence | None, checkpoint: Checkpoint | None
    ) -> str | None:
        """Stream changes at or below this position get no shadow row (None: all do): the
        checkpoint this transaction commits, else the stored one; for a live table copy's
        rows, the checkpoint the stream had committed when they were handed over."""
        if request is not None and request.settled is not None:
            return request.settled
        if request is None or not request.sparse or request.stream != self.stream:
            return None
        if checkpoint is not None and checkpoint.stream == request.stream:
            return checkpoint.position
        return self.stored


async def read(
    conn: psycopg.AsyncConnection, pipeline: str, writes: Sequence[TableWrite]
) -> Floors:
    """The stored checkpoint and mark, in the apply transaction (one round trip; none when no
    write is fenced against a checkpoint). A store written before marks existed gets its mark
    from its shadow rows, once."""
    streams = {w.shadow.fence.stream for w in writes if w.shadow.fence is not None}
    streams.discard(None)
    if len(streams) != 1:  # none, or (never in one pipeline) several: no floor
        return Floors()
    (stream,) = streams
    cur = await conn.execute(
        sql.SQL(
            "SELECT (SELECT position FROM {} WHERE pipeline = %s AND stream = %s), "
            "(SELECT value FROM {} WHERE name = %s)"
        ).format(state_table("checkpoints"), state_table("meta")),
        (pipeline, stream, mark_name(pipeline)),
    )
    row = await cur.fetchone()
    assert row is not None
    stored, mark = row
    if mark is None:
        cur = await conn.execute(
            sql.SQL(
                "SELECT coalesce(max(position COLLATE \"C\"), '') FROM {} WHERE pipeline = %s"
            ).format(state_table("shadow")),
            (pipeline,),
        )
        found = await cur.fetchone()
        mark = str(found[0]) if found else ""
        await conn.execute(
            sql.SQL("INSERT INTO {} (name, value) VALUES (%s, %s) ON CONFLICT DO NOTHING").format(
                state_table("meta")
            ),
            (mark_name(pipeline), mark),
        )
    return Floors(stream, stored, mark)


def below_floor(write: TableWrite, floor: str | None) -> TableWrite:
    """The write without its changes at or below ``floor`` (snapshot rows stay: they are the
    source's state when read); the fence's row keys filtered alike."""
    request = write.shadow.fence
    data = write.batch.data
    if floor is None or request is None or not data.num_rows:
        return write
    ops = data.column("_op")
    stale = pc.and_(
        pc.not_equal(ops, OP_READ), pc.less_equal(data.column("_pos"), pa.scalar(floor))
    )
    if not pc.any(stale).as_py():
        return write
    keep = pc.invert(stale)
    keys_keep = pc.filter(keep, pc.not_equal(ops, OP_TRUNCATE))
    fence = ServerFence(
        request.row_keys.filter(keys_keep), request.enforce, request.snapshot_rows,
        request.stream, request.sparse,
    )  # fmt: skip
    shadow = type(write.shadow)(write.shadow.upserts, write.shadow.deletes, fence)
    return TableWrite(write.spec, write.batch.replace(data.filter(keep)), shadow)


def recorded(rows: pa.Table, request: ServerFence, above: str | None) -> pa.Array:
    """Which rows (``__op``, ``__pos`` columns) keep a shadow row under ``request``."""
    ops = rows.column("__op")
    reads = pc.equal(ops, OP_READ)
    others = pc.invert(reads)
    if above is not None:
        others = pc.and_(others, pc.greater(rows.column("__pos"), pa.scalar(above)))
    if not request.snapshot_rows:
        return others
    return pc.or_(reads, others)


def highest(rows: pa.Table, keep: pa.Array) -> str | None:
    """The highest position among the kept rows (None: none)."""
    chosen = rows.column("__pos").filter(keep)
    if not len(chosen):
        return None
    found = pc.max(chosen).as_py()
    return str(found) if found is not None else None


async def raise_mark(conn: psycopg.AsyncConnection, pipeline: str, position: str) -> None:
    """Move the pipeline's mark up to ``position`` (never down), in the apply transaction."""
    await conn.execute(
        sql.SQL(
            "INSERT INTO {meta} AS m (name, value) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE "
            'SET value = EXCLUDED.value WHERE m.value COLLATE "C" < EXCLUDED.value COLLATE "C"'
        ).format(meta=state_table("meta")),
        (mark_name(pipeline), position),
    )


def highest_position(write: TableWrite) -> str | None:
    """The highest position among a write's shadow upserts (None: none carries one)."""
    upserts = write.shadow.upserts
    if upserts is None or not upserts.num_rows or "position" not in upserts.column_names:
        return None
    found = pc.max(upserts.column("position").cast(pa.string())).as_py()
    return str(found) if found is not None else None
