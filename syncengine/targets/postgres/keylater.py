"""The primary key of a first backfill's table, built after its rows are in (as pg_dump does).

Two snapshot workers copying key ranges into a table with its primary key insert into the
middle of the index, whose leaf pages then split 50/50: the key ends up ~37 % larger than one
built from sorted keys (docs/benchmarks-findings.md), and every row pays the index upkeep
while it is copied. A table the engine creates for a first backfill is therefore created
without its key (the key columns keep NOT NULL) and the key is added once every chunk is in:
one sorted build.

Nothing that matches rows by key may touch the table in between (``INSERT … ON CONFLICT``
needs the unique index, and a key probe without it scans the table), so the table carries a
mark in ``_syncengine.meta``, committed with its ``CREATE TABLE``, until the key exists:

* the process that created it builds the key when its backfill has copied every chunk, or
  before its first write through the ordinary apply path (a chunk the passthrough refused);
* any other process (a backfill resumed after a crash: its chunks are reconciled with
  ``ON CONFLICT``) builds it as soon as it looks at the table.

The build and the removal of the mark are one transaction: a crash leaves the mark, and the
next run builds the key again. A table without the mark (one the user created) is never
altered here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

import psycopg
from psycopg import errors, sql

from syncengine.errors import FatalError
from syncengine.targets.faults import fault_point
from syncengine.targets.postgres.ddl import state_table
from syncengine.targets.postgres.errors import first_line

log = logging.getLogger("syncengine.targets.postgres")

#: prefix of the ``meta`` row naming a table whose primary key is still to be built
MARK = "key_after_load "


def _mark_name(schema: str, table: str) -> str:
    return MARK + json.dumps([schema, table])


async def mark(conn: psycopg.AsyncConnection, schema: str, table: str, pipeline: str) -> None:
    """Record that ``schema.table`` was created without its key (in the creating transaction)."""
    await conn.execute(
        sql.SQL(
            "INSERT INTO {} (name, value) VALUES (%s, %s) "
            "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
        ).format(state_table("meta")),
        (_mark_name(schema, table), pipeline),
    )


async def pending(conn: psycopg.AsyncConnection, schema: str, table: str) -> bool:
    """Whether ``schema.table`` still waits for its key."""
    cur = await conn.execute(
        sql.SQL("SELECT 1 FROM {} WHERE name = %s").format(state_table("meta")),
        (_mark_name(schema, table),),
    )
    return await cur.fetchone() is not None


async def build(conn: psycopg.AsyncConnection, schema: str, table: str, key: Sequence[str]) -> bool:
    """Add the primary key of a marked table and drop its mark, inside the caller's
    transaction (which holds the table's advisory lock); False when it was not marked
    (built already, by this process or another). Duplicate keys would be a bug upstream:
    the build fails with the table's name and nothing is dropped (the mark stays)."""
    if not await pending(conn, schema, table):
        return False
    started = time.perf_counter()
    try:
        async with conn.transaction():  # a savepoint: the error below names the table
            await conn.execute(
                sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(
                    sql.Identifier(schema, table), sql.SQL(", ").join(map(sql.Identifier, key))
                )
            )
    except (errors.UniqueViolation, errors.NotNullViolation) as exc:
        raise FatalError(
            f"postgres target: building the primary key ({', '.join(key)}) of {schema}.{table} "
            f"after its backfill failed: {first_line(exc)}",
            hint="the table's rows are kept as copied; this is a bug, please report it "
            "(to go on: remove the duplicate rows and run again, the key is built then)",
        ) from None
    fault_point("postgres.key_built")
    await conn.execute(
        sql.SQL("DELETE FROM {} WHERE name = %s").format(state_table("meta")),
        (_mark_name(schema, table),),
    )
    log.info(
        "built the primary key of %s.%s after the load in %.2f s",
        schema, table, time.perf_counter() - started,
    )  # fmt: skip
    return True
