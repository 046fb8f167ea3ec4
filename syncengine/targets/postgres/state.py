"""Shadow rows and checkpoints in the target database's ``_syncengine`` schema.

They are written by the same transaction as the data, which is what makes a Postgres target
exactly-once: the data, what conflict detection will compare against, and the source position
become visible together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import psycopg
import pyarrow as pa
from psycopg import sql

from syncengine.state.schema import FORMAT_VERSION
from syncengine.targets.base import Checkpoint, TableWrite
from syncengine.targets.postgres.ddl import state_table
from syncengine.targets.shadow import shadow_table, upsert_rows


async def write_shadow(
    conn: psycopg.AsyncConnection, pipeline: str, write: TableWrite, truncated: bool
) -> None:
    """Clear (after a truncate), delete, then upsert shadow rows: three statements at most."""
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
                "DELETE FROM {} WHERE pipeline = %s AND target_table = %s AND row_key = ANY(%s)"
            ).format(shadow),
            (pipeline, table, list(write.shadow.deletes)),
        )
    rows = upsert_rows(write)
    if rows:
        keys, hashes, bases = (list(c) for c in zip(*rows, strict=True))
        await conn.execute(
            sql.SQL(
                "INSERT INTO {} (pipeline, target_table, row_key, row_hash, base) "
                "SELECT %s, %s, u.k, u.h, u.b FROM unnest(%s::text[], %s::text[], %s::text[]) "
                "AS u(k, h, b) ON CONFLICT (pipeline, target_table, row_key) DO UPDATE SET "
                "row_hash = EXCLUDED.row_hash, base = EXCLUDED.base"
            ).format(shadow),
            (pipeline, table, keys, hashes, bases),
        )


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
            "SELECT row_key, row_hash, base FROM {} WHERE pipeline = %s AND target_table = %s "
            "AND row_key = ANY(%s)"
        ).format(state_table("shadow")),
        (pipeline, table, list(row_keys)),
    )
    return shadow_table(await cur.fetchall())
