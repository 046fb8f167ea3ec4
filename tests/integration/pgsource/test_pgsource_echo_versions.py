"""Two-way echoes restated on a real server (runtime/restate.py): the row a key holds and the
version its sibling recorded for it are one state of the key, even when the sibling commits
its next write of that key between the two reads (the interleaving that left a two-way
``merge`` pair a row apart: docs/benchmarks-findings.md, the two-way merge section)."""

from __future__ import annotations

import asyncio
import datetime as dt
from types import SimpleNamespace

import psycopg
import pyarrow as pa
import pytest

from syncengine.changes import ECHO, ChangeBatch
from syncengine.runtime import restate
from syncengine.targets.postgres import ddl, versions
from tests.integration.pgsource.pgsource_helpers import execute, make_source

#: the direction restating echoes, and its sibling (whose writes into this source they are)
DIRECTION, SIBLING = "echosnap.reverse", "echosnap"
ORIGIN = "syncengine_echosnap"
T1 = dt.datetime(2026, 1, 1, 0, 0, 1, tzinfo=dt.UTC)
T2 = T1 + dt.timedelta(microseconds=1)  # a merged row: a microsecond after the newer write


@pytest.fixture
def source_side(pg_dsn):
    execute(pg_dsn, "CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int)")

    async def state_tables() -> None:
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            await ddl.ensure_state_schema(conn)
            await versions.ensure(conn)

    asyncio.run(state_tables())
    yield pg_dsn
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # origins are the cluster's
        if conn.execute("SELECT pg_replication_origin_oid(%s)", (ORIGIN,)).fetchone()[0]:
            conn.execute("SELECT pg_replication_origin_drop(%s)", (ORIGIN,))


def sibling_writes(dsn: str, name: str, qty: int, ts: dt.datetime) -> None:
    """The sibling's apply: row 1 and its recorded version in one transaction, under its
    replication origin."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT pg_replication_origin_oid(%s)", (ORIGIN,)).fetchone()[0] is None:
            conn.execute("SELECT pg_replication_origin_create(%s)", (ORIGIN,))
        conn.execute("SELECT pg_replication_origin_session_setup(%s)", (ORIGIN,))
        with conn.transaction():
            conn.execute(
                "INSERT INTO items VALUES (1, %s, %s) ON CONFLICT (id) DO UPDATE "
                "SET name = excluded.name, qty = excluded.qty",
                (name, qty),
            )
            conn.execute(
                "INSERT INTO _syncengine.versions VALUES (%s, 'items', '{\"id\":1}', %s, "
                "'remote', false) ON CONFLICT (pipeline, target_table, row_key) DO UPDATE "
                "SET ts = excluded.ts",
                (SIBLING, ts),
            )
        conn.execute("SELECT pg_replication_origin_session_reset()")


def echo_of_row_1() -> ChangeBatch:
    rows = pa.table({"id": pa.array([1], pa.int64()), "name": ["first"], "qty": [6]})
    return ChangeBatch.build(
        "public.items", rows, ops=["u"], positions=["0000000000000001.00000000"], ts=[T1],
        key=["id"], meta={ECHO: True, "resume": "x"},
    )  # fmt: skip


def test_an_echo_pairs_the_row_with_its_own_version_when_the_sibling_writes_between(
    source_side,
):
    sibling_writes(source_side, "first", 6, T1)
    source = make_source(source_side, ["public.items"])
    read_rows = source.current_rows

    async def rows_then_the_sibling_writes(*args: object) -> pa.Table:
        """The real read; then, before the versions are read, the sibling's next write of
        the key commits (on its own connection)."""
        found = await read_rows(*args)  # type: ignore[arg-type]
        sibling_writes(source_side, "second", 7, T2)
        return found

    source.current_rows = rows_then_the_sibling_writes  # type: ignore[method-assign]
    pipeline = SimpleNamespace(source=source, name=DIRECTION)

    async def scenario() -> list[ChangeBatch]:
        try:
            return await restate.versioned_echoes(pipeline, [echo_of_row_1()])  # type: ignore[arg-type]
        finally:
            await source.close()

    (restated,) = asyncio.run(scenario())
    echo = restated.data.to_pylist()
    # the row read and the version read are one state: the first write, at its own time
    # (before: 'first' with the second write's time, written back over the newer row)
    assert [(r["name"], r["qty"], r["_ts"]) for r in echo] == [("first", 6, T1)]
    # and the sibling's write is there for the next read
    assert [(r["name"], r["_ts"]) for r in asyncio.run(again(source_side))] == [("second", T2)]


async def again(dsn: str) -> list[dict[str, object]]:
    source = make_source(dsn, ["public.items"])
    try:
        pipeline = SimpleNamespace(source=source, name=DIRECTION)
        (restated,) = await restate.versioned_echoes(pipeline, [echo_of_row_1()])  # type: ignore[arg-type]
        return restated.data.to_pylist()
    finally:
        await source.close()
