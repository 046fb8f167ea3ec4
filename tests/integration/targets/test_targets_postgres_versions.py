"""Two-way ``timestamp`` on the server: a row's last commit says whether this direction wrote
it (its replication origin), and the versions a direction records keep each row's own time."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import psycopg
import pyarrow as pa
from psycopg import sql

from syncengine.targets.base import TableSpec
from syncengine.targets.postgres import ddl, versions
from syncengine.targets.postgres.origin import setup_session
from syncengine.targets.postgres.read import read_commit_times

SPEC_SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string())])
COLUMNS = {"id": "bigint", "name": "text"}


def test_commit_origin_and_recorded_versions(pg_dsn):
    suffix = uuid.uuid4().hex[:8]
    origin, table = f"tv_origin_{suffix}", f"tv_items_{suffix}"
    peer = f"tv_peer_{suffix}"  # a mesh: another direction writing into the same database
    t1 = datetime(2026, 1, 1, 0, 0, 1, 250, tzinfo=UTC)
    t2 = datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC)

    async def run() -> tuple[pa.Table, pa.Table, pa.Table]:
        conn = await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True)
        try:
            await ddl.ensure_state_schema(conn)
            await versions.ensure(conn)
            name = sql.Identifier(table)
            await conn.execute(
                sql.SQL("CREATE TABLE {} (id bigint PRIMARY KEY, name text)").format(name)
            )
            await conn.execute(sql.SQL("INSERT INTO {} VALUES (1, 'person')").format(name))
            await setup_session(conn, origin)  # from here on: this direction's own writes
            async with conn.transaction():
                await conn.execute(sql.SQL("INSERT INTO {} VALUES (2, 'engine')").format(name))
                rows = pa.table(
                    {
                        "row_key": ['{"id":2}', '{"id":3}'],
                        "ts": pa.array([t1, t2], pa.timestamp("us", tz="UTC")),
                        "side": ["remote", "local"],
                        "deleted": [False, True],
                    }
                )
                await versions.record(conn, "tv", table, rows)
            await conn.execute("SELECT pg_replication_origin_session_reset()")
            await setup_session(conn, peer)
            await conn.execute(sql.SQL("INSERT INTO {} VALUES (5, 'peer')").format(name))
            spec = TableSpec(table, ("id",), SPEC_SCHEMA)
            keys = pa.table({"id": pa.array([1, 2, 4, 5], pa.int64())})
            found = await read_commit_times(conn, "public", spec, keys, COLUMNS, [origin])
            both = await read_commit_times(conn, "public", spec, keys, COLUMNS, [origin, peer])
            recorded = await versions.read(conn, "tv", table, ['{"id":2}', '{"id":3}', '{"x":9}'])
            return found, both, recorded
        finally:
            await conn.close()
            for name_ in (origin, peer):
                drop_origin(pg_dsn, name_)

    found, both, recorded = asyncio.run(run())
    by_id = {r["id"]: r for r in found.to_pylist()}
    assert set(by_id) == {1, 2, 5}  # key 4 has no row
    assert by_id[1]["_mine"] is False and by_id[2]["_mine"] is True
    # the peer's row is a person's to this origin alone, the engine's with the peer counted
    assert by_id[5]["_mine"] is False
    assert {r["id"]: r["_mine"] for r in both.to_pylist()} == {1: False, 2: True, 5: True}
    assert by_id[1]["_ts"] is not None and by_id[2]["_ts"] is not None  # track_commit_timestamp
    got = {r["row_key"]: r for r in recorded.to_pylist()}
    assert set(got) == {'{"id":2}', '{"id":3}'}
    assert got['{"id":2}']["ts"] == t1 and got['{"id":2}']["deleted"] is False
    assert got['{"id":3}']["ts"] == t2 and got['{"id":3}']["side"] == "local"
    assert got['{"id":3}']["deleted"] is True

    # recording again replaces a key's version (a later write of the same key)
    async def again() -> pa.Table:
        conn = await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True)
        try:
            async with conn.transaction():
                rows = pa.table(
                    {
                        "row_key": ['{"id":2}'],
                        "ts": pa.array([t2], pa.timestamp("us", tz="UTC")),
                        "side": ["remote"],
                        "deleted": [True],
                    }
                )
                await versions.record(conn, "tv", table, rows)
            return await versions.read(conn, "tv", table, ['{"id":2}'])
        finally:
            await conn.close()

    replaced = asyncio.run(again()).to_pylist()
    assert replaced == [{"row_key": '{"id":2}', "ts": t2, "side": "remote", "deleted": True}]


def drop_origin(dsn: str, name: str) -> None:
    """Drop a replication origin once the backend of the connection just closed has let it go:
    the server ends that backend after ``close()`` returns, and until then the drop fails with
    "in use by PID" (SQLSTATE 55006)."""
    deadline = time.monotonic() + 10
    with psycopg.connect(dsn, autocommit=True) as admin:
        while True:
            try:
                admin.execute("SELECT pg_replication_origin_drop(%s)", (name,))
                return
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
