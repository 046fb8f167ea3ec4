"""Shadow rows and checkpoints in the target database's ``_syncengine`` schema.

They are written by the same transaction as the data, which is what makes a Postgres target
exactly-once: the data, what conflict detection will compare against, and the source position
become visible together or not at all.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

from syncengine.state.schema import FORMAT_VERSION
from syncengine.targets.base import Checkpoint, TableWrite
from syncengine.targets.postgres.ddl import state_table
from syncengine.targets.shadow import TOMBSTONE, shadow_table, stored_upserts


async def write_shadow(
    conn: psycopg.AsyncConnection, pipeline: str, write: TableWrite, truncated: bool
) -> None:
    """Clear (after a truncate), delete, then write shadow rows: keys new to the shadow by one
    ``COPY``, the others staged by ``COPY`` and upserted (per-element array parameters, the
    way before, cost more than the data apply itself)."""
    shadow = state_table("shadow")
    table = write.spec.name
    if truncated:
        await conn.execute(
            sql.SQL("DELETE FROM {} WHERE pipeline = %s AND target_table = %s").format(shadow),
            (pipeline, table),
        )
    if write.shadow.deletes:
        await conn.execute(
            sql.SQL(
                "DELETE FROM {} WHERE pipeline = %s AND target_table = %s AND row_key = ANY(%b)"
            ).format(shadow),
            (pipeline, table, list(write.shadow.deletes)),
        )
    rows = stored_upserts(write)
    if not rows.num_rows:
        return
    upserts = write.shadow.upserts
    if upserts is not None and "fresh" in upserts.column_names:
        fresh = pc.fill_null(upserts.column("fresh"), False)
        if await _insert_fresh(conn, pipeline, table, rows.filter(fresh)):
            rows = rows.filter(pc.invert(fresh))
    if rows.num_rows:
        await _upsert(conn, pipeline, table, rows)


def highest_position(write: TableWrite) -> str | None:
    """The highest position among a write's shadow upserts (None: none carries one)."""
    upserts = write.shadow.upserts
    if upserts is None or not upserts.num_rows or "position" not in upserts.column_names:
        return None
    found = pc.max(upserts.column("position").cast(pa.string())).as_py()
    return str(found) if found is not None else None


async def write_rows(
    conn: psycopg.AsyncConnection, pipeline: str, table: str, rows: pa.Table
) -> None:
    """Stored shadow rows (:data:`SHADOW_SCHEMA`): one ``COPY`` when none of their keys has a
    row yet, else staged and upserted."""
    if not await _insert_fresh(conn, pipeline, table, rows):
        await _upsert(conn, pipeline, table, rows)


async def _insert_fresh(
    conn: psycopg.AsyncConnection, pipeline: str, table: str, rows: pa.Table
) -> bool:
    """``COPY`` rows for keys that had no shadow row straight into the shadow table (half the
    work of staging and upserting); False if one exists after all (nothing written then)."""
    if not rows.num_rows:
        return True
    n = rows.num_rows
    full = rows.add_column(0, "pipeline", pa.repeat(pa.scalar(pipeline), n)).add_column(
        1, "target_table", pa.repeat(pa.scalar(table), n)
    )
    copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        state_table("shadow"), sql.SQL(", ").join(map(sql.Identifier, full.column_names))
    )
    try:
        async with conn.transaction():  # a savepoint: a duplicate key rolls back this COPY only
            async with conn.cursor() as cur, cur.copy(copy) as pipe:
                await pipe.write(_csv(full))
    except psycopg.errors.UniqueViolation:
        return False
    return True


async def _upsert(conn: psycopg.AsyncConnection, pipeline: str, table: str, rows: pa.Table) -> None:
    """Stage with ``COPY`` into a transaction-local table, then one upsert."""
    stage = sql.Identifier("_syncengine_shadow_stage")
    await conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} (row_key text, row_hash text, base text, "
            "position text) ON COMMIT DELETE ROWS"
        ).format(stage)
    )
    copy = sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(stage)
    async with conn.cursor() as cur, cur.copy(copy) as pipe:
        await pipe.write(_csv(rows))
    await conn.execute(
        sql.SQL(
            "INSERT INTO {} (pipeline, target_table, row_key, row_hash, base, position) "
            "SELECT %s, %s, row_key, row_hash, base, position FROM {} "
            "ON CONFLICT (pipeline, target_table, row_key) DO UPDATE SET "
            "row_hash = EXCLUDED.row_hash, base = EXCLUDED.base, position = EXCLUDED.position"
        ).format(state_table("shadow"), stage),
        (pipeline, table),
    )
    await conn.execute(sql.SQL("TRUNCATE {}").format(stage))


def _csv(rows: pa.Table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(rows, sink, pacsv.WriteOptions(include_header=False))
    return sink.getvalue()


async def write_checkpoint(
    conn: psycopg.AsyncConnection, pipeline: str, checkpoint: Checkpoint
) -> None:
    await conn.execute(
        sql.SQL(
            "INSERT INTO {} (pipeline, stream, position, details, version, updated_at) "
            "VALUES (%s, %s, %s, '{{}}', %s, %s) ON CONFLICT (pipeline, stream) DO UPDATE SET "
            "position = EXCLUDED.position, version = EXCLUDED.version, "
            "updated_at = EXCLUDED.updated_at"
        ).format(state_table("checkpoints")),
        (
            pipeline,
            checkpoint.stream,
            checkpoint.position,
            FORMAT_VERSION,
            datetime.now(UTC).isoformat(),
        ),
    )


async def purge_tombstones(conn: psycopg.AsyncConnection, pipeline: str, before: str) -> None:
    """Drop tombstones older than the checkpoint ``before``: a replay starts after the
    checkpoint, so they can no longer fence anything."""
    await conn.execute(
        sql.SQL("DELETE FROM {} WHERE pipeline = %s AND row_hash = %s AND position < %s").format(
            state_table("shadow")
        ),
        (pipeline, TOMBSTONE, before),
    )


async def read_checkpoint(conn: psycopg.AsyncConnection, pipeline: str, stream: str) -> str | None:
    cur = await conn.execute(
        sql.SQL("SELECT position FROM {} WHERE pipeline = %s AND stream = %s").format(
            state_table("checkpoints")
        ),
        (pipeline, stream),
    )
    row = await cur.fetchone()
    return row[0] if row else None


async def delete_checkpoint(conn: psycopg.AsyncConnection, pipeline: str, stream: str) -> None:
    await conn.execute(
        sql.SQL("DELETE FROM {} WHERE pipeline = %s AND stream = %s").format(
            state_table("checkpoints")
        ),
        (pipeline, stream),
    )


async def read_shadow(
    conn: psycopg.AsyncConnection, pipeline: str, table: str, row_keys: Sequence[str]
) -> pa.Table:
    """The shadow rows of these keys. The keys are copied into a session-local table and
    joined on the shadow's primary key: a key list sent as ``row_key = ANY(array)`` let the
    planner of a freshly filled, unanalysed shadow scan it whole and test every row against
    the whole list (one 10k-key lookup against 130k shadow rows took 20.7 s, issue 16)."""
    if not row_keys:
        return shadow_table([])
    keys = sql.Identifier("_syncengine_keys")
    async with conn.transaction():
        await conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (row_key text) ON COMMIT DELETE ROWS"
            ).format(keys)
        )
        copy = sql.SQL("COPY {} (row_key) FROM STDIN (FORMAT csv)").format(keys)
        async with conn.cursor() as cur, cur.copy(copy) as pipe:
            await pipe.write(_csv(pa.table({"row_key": pa.array(list(row_keys), pa.string())})))
        # LATERAL … LIMIT (never flattened into a join): one primary-key probe per key,
        # whatever the shadow's statistics say (a plain join of a shadow without them hashed
        # the whole table for every batch)
        cur = await conn.execute(
            sql.SQL(
                "SELECT k.row_key, f.row_hash, f.base, f.position FROM {} AS k CROSS JOIN "
                "LATERAL (SELECT row_hash, base, position FROM {} WHERE pipeline = %s "
                "AND target_table = %s AND row_key = k.row_key LIMIT 1) AS f"
            ).format(keys, state_table("shadow")),
            (pipeline, table),
        )
        return shadow_table(await cur.fetchall())
