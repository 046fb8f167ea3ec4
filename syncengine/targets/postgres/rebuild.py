"""How a table's shadow is kept, and its rebuild after a strategy switch
(:mod:`syncengine.conflicts.switch`), in the target's ``_syncengine`` schema."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from syncengine.targets.postgres.ddl import state_table
from syncengine.targets.postgres.state import read_checkpoint


def kept_name(pipeline: str, table: str) -> str:
    """The ``_syncengine.meta`` row saying how ``pipeline`` keeps ``table``'s shadow."""
    return f"shadow_kept/{pipeline}/{table}"


async def read_kept(conn: psycopg.AsyncConnection, pipeline: str, table: str) -> str | None:
    cur = await conn.execute(
        sql.SQL("SELECT value FROM {} WHERE name = %s").format(state_table("meta")),
        (kept_name(pipeline, table),),
    )
    row = await cur.fetchone()
    return str(row[0]) if row else None


async def keep(
    conn: psycopg.AsyncConnection,
    pipeline: str,
    table: str,
    kept: str,
    rows: AsyncIterator[pa.Table] | None,
    stream: str | None,
) -> int:
    """Record how the shadow is kept; with ``rows`` (row_key, row_hash, base) first replace the
    table's shadow rows at or below the stored checkpoint by them, at the checkpoint's
    position (a fence row above it keeps its position: a replay can still reach it). In the
    caller's transaction; how many rows were written."""
    written = 0
    if rows is not None:
        stored = None if stream is None else await read_checkpoint(conn, pipeline, stream)
        written = await _rebuild(conn, pipeline, table, rows, stored)
    await conn.execute(
        sql.SQL(
            "INSERT INTO {} (name, value) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
        ).format(state_table("meta")),
        (kept_name(pipeline, table), kept),
    )
    return written


async def _rebuild(
    conn: psycopg.AsyncConnection,
    pipeline: str,
    table: str,
    rows: AsyncIterator[pa.Table],
    position: str | None,
) -> int:
    shadow = state_table("shadow")
    if position is not None:  # rows a replay cannot reach any more: outdated, all of them
        await conn.execute(
            sql.SQL(
                "DELETE FROM {} WHERE pipeline = %s AND target_table = %s AND "
                '(position IS NULL OR position COLLATE "C" <= %s)'
            ).format(shadow),
            (pipeline, table, position),
        )
    stage = sql.Identifier("_syncengine_rebuild")
    await conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} (row_key text, row_hash text, base text) ON COMMIT DROP"
        ).format(stage)
    )
    written = 0
    copy = sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(stage)
    async for chunk in rows:
        if not chunk.num_rows:
            continue
        sink = io.BytesIO()
        pacsv.write_csv(chunk, sink, pacsv.WriteOptions(include_header=False))
        async with conn.cursor() as cur, cur.copy(copy) as pipe:
            await pipe.write(sink.getvalue())
        written += chunk.num_rows
    await conn.execute(
        sql.SQL(
            "INSERT INTO {shadow} AS f (pipeline, target_table, row_key, row_hash, base, "
            "position) SELECT %s, %s, row_key, row_hash, base, %s FROM {stage} "
            "ON CONFLICT (pipeline, target_table, row_key) DO UPDATE SET "
            "row_hash = EXCLUDED.row_hash, base = EXCLUDED.base, position = CASE WHEN "
            'f.position IS NULL OR f.position COLLATE "C" < EXCLUDED.position COLLATE "C" '
            "THEN EXCLUDED.position ELSE f.position END"
        ).format(shadow=shadow, stage=stage),
        (pipeline, table, position),
    )
    return written
