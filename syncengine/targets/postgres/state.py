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
import pyarrow.csv as pacsv
from psycopg import sql

from syncengine.state.schema import FORMAT_VERSION
from syncengine.targets.base import Checkpoint, TableWrite
from syncengine.targets.postgres.ddl import state_table
from syncengine.targets.shadow import shadow_table, stored_upserts


async def write_shadow(
    conn: psycopg.AsyncConnection, pipeline: str, write: TableWrite, truncated: bool
) -> None:
    """Clear (after a truncate), delete, then upsert shadow rows: one ``COPY`` into a
    transaction-local staging table and one upsert (per-element array parameters cost more
    than the data apply itself)."""
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
    stage = sql.Identifier("_syncengine_shadow_stage")
    await conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} (row_key text, row_hash text, base text, "
            "position text) ON COMMIT DELETE ROWS"
        ).format(stage)
    )
    sink = io.BytesIO()
    pacsv.write_csv(rows, sink, pacsv.WriteOptions(include_header=False))
    copy = sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(stage)
    async with conn.cursor() as cur, cur.copy(copy) as pipe:
        await pipe.write(sink.getvalue())
    await conn.execute(
        sql.SQL(
            "INSERT INTO {} (pipeline, target_table, row_key, row_hash, base, position) "
            "SELECT %s, %s, row_key, row_hash, base, position FROM {} "
            "ON CONFLICT (pipeline, target_table, row_key) DO UPDATE SET "
            "row_hash = EXCLUDED.row_hash, base = EXCLUDED.base, position = EXCLUDED.position"
        ).format(shadow, stage),
        (pipeline, table),
    )
    await conn.execute(sql.SQL("TRUNCATE {}").format(stage))


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
    if not row_keys:
        return shadow_table([])
    cur = await conn.execute(
        sql.SQL(
            "SELECT row_key, row_hash, base, position FROM {} WHERE pipeline = %s "
            "AND target_table = %s "
            "AND row_key = ANY(%b)"
        ).format(state_table("shadow")),
        (pipeline, table, list(row_keys)),
    )
    return shadow_table(await cur.fetchall())
