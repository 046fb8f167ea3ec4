"""The Postgres target's bulk fast path (``direct.copy_directly``) decides without a query
when a batch updates: a source update names a key the target holds, so probing for it is a
wasted round trip per table in every stream group of updates."""

from __future__ import annotations

import asyncio

import psycopg
import pyarrow as pa
from psycopg import sql

from syncengine.changes import ChangeBatch
from syncengine.targets.base import ShadowUpdate, TableSpec, TableWrite
from syncengine.targets.postgres.apply import prepare
from syncengine.targets.postgres.direct import copy_directly

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])
COLUMNS = {"id": "bigint", "name": "text"}


def write(ops: list[str]) -> TableWrite:
    n = len(ops)
    data = pa.table({"id": list(range(1, n + 1)), "name": [f"n{i}" for i in range(n)]}, SCHEMA)
    batch = ChangeBatch.build(
        "dt", data, ops=ops, positions=[f"{i:02}" for i in range(n)], key=("id",)
    )
    return TableWrite(TableSpec("dt", ("id",), SCHEMA), batch, ShadowUpdate(None, []))


def test_a_batch_with_an_update_is_not_probed_and_inserts_alone_go_straight_in(pg_target_dsn):
    with psycopg.connect(pg_target_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS dt")
        conn.execute("CREATE TABLE dt (id bigint PRIMARY KEY, name text)")

    async def scenario() -> None:
        table = sql.Identifier("public", "dt")
        closed = await psycopg.AsyncConnection.connect(pg_target_dsn)
        await closed.close()
        # any query on a closed connection raises: the answer comes from the batch alone
        updates = write(["c", "u"])
        assert not await copy_directly(closed, table, updates, prepare(updates, COLUMNS), COLUMNS)
        async with await psycopg.AsyncConnection.connect(pg_target_dsn) as conn:
            inserts = write(["c", "c", "c"])
            staged = prepare(inserts, COLUMNS)
            assert await copy_directly(conn, table, inserts, staged, COLUMNS)
            await conn.commit()

    asyncio.run(scenario())
    with psycopg.connect(pg_target_dsn) as conn:
        assert conn.execute("SELECT id, name FROM dt ORDER BY id").fetchall() == [
            (1, "n0"), (2, "n1"), (3, "n2")
        ]  # fmt: skip
