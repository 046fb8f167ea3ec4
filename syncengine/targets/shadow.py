"""Shadow rows and checkpoints for targets that keep them in the state store (Parquet, Mongo
without transactions; :class:`~syncengine.state.protocols.TargetState`): written after the
data, in one state transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from syncengine.state.protocols import CheckpointStore, ShadowStore, TargetState
from syncengine.targets.base import Checkpoint, ShadowUpdate, TableWrite

if TYPE_CHECKING:
    import polars as pl
else:
    from syncengine.deferred import polars as pl

SHADOW_SCHEMA = pa.schema(
    [
        ("row_key", pa.string()),
        ("row_hash", pa.string()),
        ("base", pa.string()),
        ("position", pa.string()),
    ]
)
PURGE_EVERY = 256
"""Checkpoints between purges of the tombstones the checkpoint has passed."""
TOMBSTONE = ""
"""How a stored shadow row says "deleted as of ``position``" (``row_hash`` is NOT NULL in the
state tables); :func:`shadow_table` turns it back into a null hash."""
FENCE_ONLY = "fence"
"""The stored ``row_hash`` of a *slim* shadow row: the key was written at ``position`` by a
strategy that records no content (``remote`` without read-back, syncengine.conflicts.fence);
never a real hash, which starts with the Polars version tag."""


def stored_upserts(write: TableWrite) -> pa.Table:
    """A write's shadow upserts as stored: all four columns, tombstones as :data:`TOMBSTONE`."""
    upserts = write.shadow.upserts
    if upserts is None or not upserts.num_rows:
        return SHADOW_SCHEMA.empty_table()

    def column(name: str) -> pa.ChunkedArray | pa.Array:
        if name in upserts.column_names:
            return upserts.column(name).cast(pa.string())
        return pa.nulls(upserts.num_rows, pa.string())

    hashes = pc.fill_null(column("row_hash"), TOMBSTONE)
    return pa.table(
        [column("row_key"), hashes, column("base"), column("position")], schema=SHADOW_SCHEMA
    )


def shadow_rows(write: TableWrite) -> list[tuple[str, str, str | None, str | None]]:
    """(row_key, row_hash, base, position) of a write's shadow upserts, as stored."""
    table = stored_upserts(write)
    return list(zip(*(table.column(i).to_pylist() for i in range(4)), strict=True))


def shadow_of_keys(write: TableWrite, keys: pl.DataFrame, keep: bool) -> ShadowUpdate:
    """The write's shadow changes for the given keys' rows only (``keep``), or for all others:
    shadow rows, deletes, and (two-way ``timestamp``) the versions recorded with the rows and
    the deletes that found no row, so a part of a split group records its own keys' versions
    and a refused row records none."""
    # the conflict layer's canonical row key, so the keys match the ones it produced
    from syncengine.conflicts.rows import row_keys

    named = row_keys(keys, write.spec.key).to_arrow().cast(pa.string())
    shadow = write.shadow

    def of_keys(table: pa.Table | None) -> pa.Table | None:
        if table is None or not table.num_rows:
            return table
        found = pc.is_in(table.column("row_key"), named)
        return table.filter(found if keep else pc.invert(found))

    listed = set(named.to_pylist())
    return ShadowUpdate(
        of_keys(shadow.upserts),
        [k for k in shadow.deletes if (k in listed) == keep],
        versions=of_keys(shadow.versions),
        absent_deletes=[k for k in shadow.absent_deletes if (k in listed) == keep],
    )


def without_rejected(write: TableWrite, rejected_keys: pl.DataFrame) -> TableWrite:
    """The write with no shadow change for keys whose row the target refused: the shadow must
    say what the target holds, and a refused row was not written."""
    if not rejected_keys.height:
        return write
    return TableWrite(write.spec, write.batch, shadow_of_keys(write, rejected_keys, keep=False))


def shadow_table(rows: Iterable[Sequence[str | None]]) -> pa.Table:
    """Stored shadow rows (row_key, row_hash, base, position) as :data:`SHADOW_SCHEMA`, with
    tombstones' hashes null."""
    columns = [list(c) for c in zip(*rows, strict=True)]
    table = pa.table(
        [pa.array(c, pa.string()) for c in columns or [[], [], [], []]], schema=SHADOW_SCHEMA
    )
    hashes = table.column("row_hash")
    live = pc.not_equal(hashes, pa.scalar(TOMBSTONE))
    return table.set_column(1, "row_hash", pc.if_else(live, hashes, pa.scalar(None, pa.string())))


def read_sqlite_shadow(
    state: ShadowStore, pipeline: str, table: str, row_keys: Sequence[str]
) -> pa.Table:
    found = state.get_shadow(pipeline, table, row_keys)
    return shadow_table((k, h, b, p) for k, (h, b, p) in found.items())


def get_sqlite_checkpoint(state: CheckpointStore, pipeline: str, stream: str) -> str | None:
    found = state.get_checkpoint(pipeline, stream)
    return found.position if found else None


@dataclass
class PurgeSchedule:
    """Which checkpoints also purge tombstones: every :data:`PURGE_EVERY`-th a target writes
    (a replay starts after the checkpoint, so older tombstones can no longer fence anything)."""

    written: int = 0

    def due(self, checkpoint: Checkpoint | None) -> bool:
        if checkpoint is None:
            return False
        self.written += 1
        return self.written % PURGE_EVERY == 0


@dataclass
class AnalyzeSchedule:
    """When a target refreshes its shadow table's planner statistics: each time the rows it
    wrote there since it started doubled (from :data:`ANALYZE_FROM`), so a bulk load is
    analysed a logarithmic number of times and a steady stream almost never."""

    written: int = 0
    next_at: int = 0

    def due(self, rows: int) -> bool:
        self.written += rows
        if self.written < max(self.next_at, ANALYZE_FROM):
            return False
        self.next_at = 2 * self.written
        return True


ANALYZE_FROM = 20_000
"""Shadow rows written before the first ANALYZE (below that a scan costs nothing)."""


def commit_to_sqlite(
    state: TargetState,
    pipeline: str,
    writes: Sequence[TableWrite],
    truncated: set[str],
    checkpoint: Checkpoint | None,
    purge: bool = False,
) -> None:
    """Shadow rows (a truncated table loses all of its own first) and the checkpoint, together."""
    with state.transaction() as db:
        for write in writes:
            table = write.spec.name
            if table in truncated:
                state.clear_shadow(db, pipeline, table)
            state.write_shadow(db, pipeline, table, shadow_rows(write), write.shadow.deletes)
        if checkpoint is not None:
            state.write_checkpoint(db, pipeline, checkpoint.stream, checkpoint.position)
            if purge:
                state.purge_tombstones(db, pipeline, checkpoint.position)
