"""Shadow rows and checkpoints for targets that keep them in the SQLite store (Parquet, Mongo
without transactions): written after the data, in one SQLite transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from syncengine.state.sqlite import SQLiteStateStore
from syncengine.targets.base import Checkpoint, ShadowUpdate, TableWrite

SHADOW_SCHEMA = pa.schema(
    [("row_key", pa.string()), ("row_hash", pa.string()), ("base", pa.string())]
)


def upsert_rows(write: TableWrite) -> list[tuple[str, str, str | None]]:
    """(row_key, row_hash, base) of a write's shadow upserts; ``base`` may be absent."""
    upserts = write.shadow.upserts
    if upserts is None or not upserts.num_rows:
        return []
    base = (
        upserts.column("base").to_pylist()
        if "base" in upserts.column_names
        else [None] * upserts.num_rows
    )
    keys = upserts.column("row_key").to_pylist()
    hashes = upserts.column("row_hash").to_pylist()
    return list(zip(keys, hashes, base, strict=True))


def without_rejected(write: TableWrite, rejected_keys: pl.DataFrame) -> TableWrite:
    """The write with no shadow change for keys whose row the target refused: the shadow must
    say what the target holds, and a refused row was not written."""
    if not rejected_keys.height:
        return write
    # the conflict layer's canonical row key, so the keys match the ones it produced
    from syncengine.conflicts.rows import row_keys

    refused = row_keys(rejected_keys, write.spec.key).to_list()
    upserts = write.shadow.upserts
    if upserts is not None and upserts.num_rows:
        keep = pc.invert(pc.is_in(upserts.column("row_key"), pa.array(refused, pa.string())))
        upserts = upserts.filter(keep)
    deletes = [k for k in write.shadow.deletes if k not in set(refused)]
    return TableWrite(write.spec, write.batch, ShadowUpdate(upserts, deletes))


def shadow_table(rows: Iterable[tuple[str, str, str | None]]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) or [(), (), ()]
    return pa.table([pa.array(list(c), pa.string()) for c in columns], schema=SHADOW_SCHEMA)


def read_sqlite_shadow(
    state: SQLiteStateStore, pipeline: str, table: str, row_keys: Sequence[str]
) -> pa.Table:
    found = state.get_shadow(pipeline, table, row_keys)
    return shadow_table((k, h, b) for k, (h, b) in found.items())


def get_sqlite_checkpoint(state: SQLiteStateStore, pipeline: str, stream: str) -> str | None:
    found = state.get_checkpoint(pipeline, stream)
    return found.position if found else None


def commit_to_sqlite(
    state: SQLiteStateStore,
    pipeline: str,
    writes: Sequence[TableWrite],
    truncated: set[str],
    checkpoint: Checkpoint | None,
) -> None:
    """Shadow rows (a truncated table loses all of its own first) and the checkpoint, together."""
    with state.transaction() as db:
        for write in writes:
            table = write.spec.name
            if table in truncated:
                db.execute(
                    "DELETE FROM shadow WHERE pipeline=? AND target_table=?", (pipeline, table)
                )
            state.write_shadow(db, pipeline, table, upsert_rows(write), write.shadow.deletes)
        if checkpoint is not None:
            state.write_checkpoint(db, pipeline, checkpoint.stream, checkpoint.position)
