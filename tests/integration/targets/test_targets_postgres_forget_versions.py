"""``checkpoints remove`` clears a two-way direction's recorded versions of the removed table:
left behind, a table synced again later would have its new rows judged against old tombstones."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg
import pyarrow as pa

from syncengine.targets.postgres import versions
from syncengine.targets.postgres.ddl import ensure_state_schema
from syncengine.targets.postgres.forget import forget_table


def _versions(keys: list[str]) -> pa.Table:
    now = datetime.now(UTC)
    return pa.Table.from_pylist(
        [{"row_key": k, "ts": now, "side": "remote", "deleted": True} for k in keys],
        schema=versions.VERSIONS_SCHEMA,
    )


def test_remove_deletes_that_tables_versions_only(pg_target_dsn):
    async def scenario() -> tuple[dict[str, int], list[tuple[str, str, str]]]:
        conn = await psycopg.AsyncConnection.connect(pg_target_dsn, autocommit=True)
        try:
            await ensure_state_schema(conn)
            await versions.ensure(conn)
            async with conn.transaction():
                await versions.record(conn, "p", "c", _versions(['{"id":1}', '{"id":2}']))
                await versions.record(conn, "p", "d", _versions(['{"id":1}']))
                await versions.record(conn, "q", "c", _versions(['{"id":1}']))
            async with conn.transaction():
                gone = await forget_table(conn, "p", "public.c", ["c"])
            cur = await conn.execute(
                "SELECT pipeline, target_table, row_key FROM _syncengine.versions ORDER BY 1, 2"
            )
            return gone, await cur.fetchall()
        finally:
            await conn.close()

    gone, left = asyncio.run(scenario())
    assert gone["target versions"] == 2
    assert left == [("p", "d", '{"id":1}'), ("q", "c", '{"id":1}')]


def test_remove_on_a_one_way_target_has_no_versions_to_delete(pg_target_dsn):
    async def scenario() -> dict[str, int]:
        conn = await psycopg.AsyncConnection.connect(pg_target_dsn, autocommit=True)
        try:
            await ensure_state_schema(conn)
            async with conn.transaction():
                return await forget_table(conn, "p", "public.c", ["c"])
        finally:
            await conn.close()

    assert asyncio.run(scenario())["target versions"] == 0
