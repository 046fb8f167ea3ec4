"""Per-key versions of what a two-way direction wrote: ``_syncengine.versions``.

Last writer wins (``timestamp`` in a two-way pipeline) needs, for every key, the version of the
state each side holds: its commit time and the side whose write it is. A row written by a
person carries both in the server (``pg_xact_commit_timestamp_origin(xmin)``: its commit time,
no replication origin). A row the engine wrote does not: its apply transaction commits many
source transactions at once, under one commit time. And a deleted row carries nothing at all.
So each direction records here, in the apply transaction that writes the row (or the delete),
the row's own version: the source commit time of the change written (``_ts``, carried through
compaction) and its side (``remote``: the direction's source; ``local``: a correction that
writes back what the target itself held, :mod:`syncengine.conflicts.versions`).

One row per (direction, target table, key), replaced by each later write; ``deleted`` rows
are the tombstones last writer wins compares a later update with.
"""

from __future__ import annotations

import io

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from syncengine.targets.postgres.ddl import state_table

#: what :func:`record` takes and :func:`read` returns
VERSIONS_SCHEMA = pa.schema(
    [
        pa.field("row_key", pa.string()),
        pa.field("ts", pa.timestamp("us", tz="UTC")),
        pa.field("side", pa.string()),
        pa.field("deleted", pa.bool_()),
    ]
)


async def ensure(conn: psycopg.AsyncConnection) -> None:
    """Create the table (a two-way direction's target, at connect), under the lock that
    ``ddl.ensure_state_schema`` takes (concurrent first starts must not race)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('syncengine.state_schema'))")
        await conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (pipeline text, target_table text, row_key text, "
                "ts timestamptz, side text, deleted boolean, "
                "PRIMARY KEY (pipeline, target_table, row_key))"
            ).format(state_table("versions"))
        )


async def record(conn: psycopg.AsyncConnection, pipeline: str, table: str, rows: pa.Table) -> None:
    """Upsert ``rows`` (:data:`VERSIONS_SCHEMA`) inside the open apply transaction."""
    if not rows.num_rows:
        return
    stage = sql.Identifier("_syncengine_versions_stage")
    async with conn.transaction():  # a savepoint inside the apply transaction
        await conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (row_key text, ts timestamptz, side text, "
                "deleted boolean) ON COMMIT DELETE ROWS"
            ).format(stage)
        )
        async with (
            conn.cursor() as cur,
            cur.copy(sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(stage)) as pipe,
        ):
            await pipe.write(_csv(rows.select(VERSIONS_SCHEMA.names).cast(VERSIONS_SCHEMA)))
        await conn.execute(
            sql.SQL(
                "INSERT INTO {} (pipeline, target_table, row_key, ts, side, deleted) "
                "SELECT %s, %s, row_key, ts, side, deleted FROM {} "
                "ON CONFLICT (pipeline, target_table, row_key) DO UPDATE SET "
                "ts = EXCLUDED.ts, side = EXCLUDED.side, deleted = EXCLUDED.deleted"
            ).format(state_table("versions"), stage),
            (pipeline, table),
        )
        await conn.execute(sql.SQL("TRUNCATE {}").format(stage))


async def read(
    conn: psycopg.AsyncConnection, pipeline: str, table: str, row_keys: list[str]
) -> pa.Table:
    """The recorded versions of these keys (:data:`VERSIONS_SCHEMA`; a key never recorded is
    missing): the keys staged by ``COPY`` and probed one primary-key lookup each (as
    ``state.read_shadow`` does, never a big ``= ANY(array)``)."""
    if not row_keys:
        return VERSIONS_SCHEMA.empty_table()
    keys = sql.Identifier("_syncengine_version_keys")
    async with conn.transaction():  # the staged keys live until its end (ON COMMIT)
        await conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (row_key text) ON COMMIT DELETE ROWS"
            ).format(keys)
        )
        async with (
            conn.cursor() as cur,
            cur.copy(sql.SQL("COPY {} (row_key) FROM STDIN (FORMAT csv)").format(keys)) as pipe,
        ):
            await pipe.write(_csv(pa.table({"row_key": pa.array(row_keys, pa.string())})))
        cur = await conn.execute(
            sql.SQL(
                "SELECT k.row_key, f.ts, f.side, f.deleted FROM {} AS k CROSS JOIN LATERAL "
                "(SELECT ts, side, deleted FROM {} WHERE pipeline = %s AND target_table = %s "
                "AND row_key = k.row_key LIMIT 1) AS f"
            ).format(keys, state_table("versions")),
            (pipeline, table),
        )
        found = await cur.fetchall()
        # inside a group's transaction ON COMMIT comes later: clear for the next read
        await conn.execute(sql.SQL("TRUNCATE {}").format(keys))
    return pa.Table.from_arrays(
        [pa.array([r[i] for r in found], f.type) for i, f in enumerate(VERSIONS_SCHEMA)],
        schema=VERSIONS_SCHEMA,
    )


def _csv(rows: pa.Table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(rows, sink, pacsv.WriteOptions(include_header=False))
    return sink.getvalue()
