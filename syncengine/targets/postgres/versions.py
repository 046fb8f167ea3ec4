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

import psycopg
import pyarrow as pa
from psycopg import sql

from syncengine.targets.postgres.ddl import STATE_SCHEMA, state_table
from syncengine.targets.postgres.state import probe_per_key, upsert_per_key

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
    async with conn.transaction():  # a savepoint inside the apply transaction
        staged = rows.select(VERSIONS_SCHEMA.names).cast(VERSIONS_SCHEMA)
        await upsert_per_key(conn, "versions", _STAGED, pipeline, table, staged)


#: the versions' columns after their key, with their SQL types
_STAGED = (("ts", "timestamptz"), ("side", "text"), ("deleted", "boolean"))


async def read(
    conn: psycopg.AsyncConnection, pipeline: str, table: str, row_keys: list[str]
) -> pa.Table:
    """The recorded versions of these keys (:data:`VERSIONS_SCHEMA`; a key never recorded is
    missing), one primary-key probe each (:func:`.state.probe_per_key`)."""
    if not row_keys:
        return VERSIONS_SCHEMA.empty_table()
    names = [name for name, _ in _STAGED]
    found = await probe_per_key(conn, "versions", names, pipeline, table, row_keys)
    return pa.Table.from_arrays(
        [pa.array([r[i] for r in found], f.type) for i, f in enumerate(VERSIONS_SCHEMA)],
        schema=VERSIONS_SCHEMA,
    )


async def forget(conn: psycopg.AsyncConnection, pipeline: str, targets: list[str]) -> int:
    """Delete the versions of these target tables (``checkpoints remove``, in the caller's
    transaction); 0 where no two-way direction ever created the table. Left behind, a table
    synced again later would have its new rows judged against the old tombstones."""
    cur = await conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %s "
        "AND tablename = 'versions')",
        (STATE_SCHEMA,),
    )
    row = await cur.fetchone()
    if not (row and row[0]):
        return 0
    cur = await conn.execute(
        sql.SQL("DELETE FROM {} WHERE pipeline = %s AND target_table = ANY(%s)").format(
            state_table("versions")
        ),
        (pipeline, targets),
    )
    return cur.rowcount
