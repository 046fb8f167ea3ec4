"""The rows some keys of a source table hold *now*, read by key on an ordinary connection.

A two-way direction whose source wins every conflict (``prefer``) applies these instead of
the images its stream carried (:mod:`syncengine.runtime.restate` says why). The reading is
the Postgres target's own (same select list, same Arrow conversion), so a row comes back
typed as the stream decodes it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import psycopg
import pyarrow as pa
from psycopg import sql
from psycopg.pq import TransactionStatus

from syncengine.names import QualifiedName
from syncengine.targets.base import TableSpec
from syncengine.targets.postgres import versions
from syncengine.targets.postgres.ddl import existing_columns, state_table
from syncengine.targets.postgres.read import read_commit_times, read_rows


@contextlib.asynccontextmanager
async def one_snapshot(conn: psycopg.AsyncConnection) -> AsyncIterator[None]:
    """The reads inside the block, on ``conn``, see one snapshot (a REPEATABLE READ
    transaction, rolled back after: it writes nothing but the probes' temporary tables).

    Why: a two-way direction restates an echo as the row its key holds now *and* the version
    its sibling recorded for it. Read in two statements, a sibling apply committing between
    them paired one write's row with the next write's version: the older row was written
    back to the other side as a correction under the newer write's version, and the two
    sides, each holding one of the two rows under that one version, never settled
    (docs/benchmarks-findings.md, the two-way merge section)."""
    await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    try:
        yield
    finally:
        if not conn.closed and conn.pgconn.transaction_status != TransactionStatus.IDLE:
            await conn.execute("ROLLBACK")


async def current_rows(
    conn: psycopg.AsyncConnection,
    table: str,
    key: tuple[str, ...],
    schema: pa.Schema,
    keys: pa.Table,
) -> pa.Table:
    """The columns of ``schema`` (those the table still has) of the rows with ``keys``;
    a key with no row is absent from the answer."""
    name = QualifiedName.parse(table)
    columns = await existing_columns(conn, name.schema, name.name) or {}
    fields = [f for f in schema if f.name in columns]
    spec = TableSpec(name.name, key, pa.schema(fields))
    return await read_rows(conn, name.schema, spec, keys, columns)


async def sibling_versions(
    conn: psycopg.AsyncConnection,
    table: str,
    key: tuple[str, ...],
    keys: pa.Table,
    row_keys: list[str],
    sibling: str,
    origins: Sequence[str],
) -> tuple[pa.Table, pa.Table]:
    """For a two-way direction's echoes: which of these keys' rows were last written by its
    sibling (key columns, ``_mine``: under one of ``origins``), and the versions recorded for
    them in this database under the name ``sibling`` (``row_key``, ``ts``, ``side``,
    ``deleted``; nothing when none was, or under another table name)."""
    name = QualifiedName.parse(table)
    columns = await existing_columns(conn, name.schema, name.name) or {}
    spec = TableSpec(name.name, key, pa.schema([keys.schema.field(k) for k in key]))
    commits = await read_commit_times(conn, name.schema, spec, keys, columns, origins)
    recorded = versions.VERSIONS_SCHEMA.empty_table()
    for written in await recorded_names(conn, sibling, name):
        found = await versions.read(conn, sibling, written, row_keys)
        recorded = pa.concat_tables([recorded, found])
    return commits, recorded


async def recorded_names(
    conn: psycopg.AsyncConnection, sibling: str, table: QualifiedName
) -> list[str]:
    """The names ``sibling`` recorded ``table``'s versions under: its mapping's target name,
    schema-qualified or not (none before its first write). Each spelling is one probe of the
    primary key's prefix, not a scan of the sibling's versions."""
    spellings = sorted({table.name, table.sql, f"{table.schema}.{table.name}"})
    found = []
    for name in spellings:
        if QualifiedName.parse(name, table.schema) != table:
            continue  # a bare name that would parse differently
        cur = await conn.execute(
            sql.SQL(
                "SELECT EXISTS (SELECT 1 FROM {} WHERE pipeline = %s AND target_table = %s)"
            ).format(state_table("versions")),
            (sibling, name),
        )
        row = await cur.fetchone()
        if row is not None and row[0]:
            found.append(name)
    return found
