"""Staging tables on a real server: a small write reuses its shape's table across transactions,
never shares it within one, and survives the rollback of the transaction that created it; a
big write gets a table of its own that the commit drops."""

from __future__ import annotations

import asyncio

import psycopg
from psycopg import sql

from syncengine.targets.postgres.staging import REUSED_UP_TO, StagingTables

SHAPE = [("__row", "bigint"), ("id", "integer"), ("name", "text")]


async def count(conn: psycopg.AsyncConnection, table: sql.Identifier) -> int:
    cur = await conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def exists(conn: psycopg.AsyncConnection, table: sql.Identifier) -> bool:
    cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table.as_string(conn),))
    row = await cur.fetchone()
    assert row is not None
    return bool(row[0])


def test_small_writes_reuse_a_table_per_shape_big_ones_get_their_own(pg_dsn):
    async def run() -> None:
        conn = await psycopg.AsyncConnection.connect(pg_dsn)
        try:
            staging = StagingTables()
            staging.begin()
            async with conn.transaction():
                first = await staging.take(conn, SHAPE, 10)
                await conn.execute(
                    sql.SQL("INSERT INTO {} VALUES (0, 1, 'a'), (1, 2, 'b')").format(first.table)
                )
                second = await staging.take(conn, SHAPE, 10)  # same shape, same transaction
                assert second.table != first.table and second.had != first.had
                assert await count(conn, second.table) == 0
            staging.begin()
            async with conn.transaction():
                again = await staging.take(conn, SHAPE, 10)
                assert again.table == first.table  # reused, and emptied by the commit
                assert await count(conn, again.table) == 0

            staging.begin()
            async with conn.transaction():
                big = await staging.take(conn, SHAPE, REUSED_UP_TO + 1)
                assert big.table != first.table
                assert await exists(conn, big.table)
            assert not await exists(conn, big.table)  # ON COMMIT DROP

            other = [("__row", "bigint"), ("id", "bigint")]
            staging.begin()
            await conn.execute("BEGIN")
            created = await staging.take(conn, other, 1)
            await conn.execute("ROLLBACK")  # the table created with it is gone
            assert not await exists(conn, created.table)
            staging.begin()
            async with conn.transaction():
                retaken = await staging.take(conn, other, 1)
                assert retaken.table == created.table
                assert await exists(conn, retaken.table)
        finally:
            await conn.close()

    asyncio.run(run())
