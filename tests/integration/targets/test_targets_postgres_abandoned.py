"""A target connection the engine gives up on inside a transaction, behind a half-open link
(a proxy that forwards nothing more and closes nothing): the server session is ended, so the
row locks of its open transaction do not block the next group (syncengine.targets.postgres.
abandoned)."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pyarrow as pa
import pytest

from syncengine.changes import ChangeBatch
from syncengine.config.models import PostgresTargetConfig
from syncengine.targets.base import TableSpec, TableWrite
from syncengine.targets.postgres import PostgresTarget
from tests.reliability.rel_proxy import proxied as through_proxy

SPEC = TableSpec("ledger", ("id",), pa.schema([("id", pa.int64()), ("amount", pa.int64())]))


@pytest.fixture
def proxied(pg_target_dsn):
    """(the target database's DSN through a fresh proxy, the proxy)."""
    with through_proxy(pg_target_dsn) as pair:
        yield pair


def one_row() -> TableWrite:
    rows = pa.table({"id": [1], "amount": [5]})
    return TableWrite(
        SPEC, ChangeBatch.build("ledger", rows, ops=["c"], positions=["1"], key=["id"])
    )


def test_a_session_abandoned_in_a_transaction_is_ended_and_its_locks_freed(pg_target_dsn, proxied):
    dsn, proxy = proxied

    async def scenario() -> int:
        target = PostgresTarget("p", PostgresTargetConfig(type="postgres", dsn=dsn))
        await target.open()
        spec = await target.ensure_table(SPEC)
        await target.apply([TableWrite(spec, one_row().batch)], None)
        conn = await target._connection()
        await conn.execute("BEGIN")
        await conn.execute("UPDATE ledger SET amount = 6 WHERE id = 1")  # holds the row's lock
        pid = conn.info.backend_pid
        assert proxy.half_open() == 1  # the link goes silent, the server session lives on
        await target.close()  # given up inside its transaction
        return pid

    pid = asyncio.run(scenario())
    with psycopg.connect(pg_target_dsn, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '10s'")  # the abandoned transaction would hold it forever
        conn.execute("UPDATE ledger SET amount = 7 WHERE id = 1")
        deadline = time.monotonic() + 10
        while conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()[0]:
            assert time.monotonic() < deadline, "the abandoned session still runs"
            time.sleep(0.1)
        assert conn.execute("SELECT amount FROM ledger WHERE id = 1").fetchone() == (7,)
