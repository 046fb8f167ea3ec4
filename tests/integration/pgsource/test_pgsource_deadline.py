"""No source round trip waits forever on a connection that went silent (half-open).

The connections run through the reliability suite's loopback proxy, whose ``half_open()``
keeps them open but forwards nothing (a NAT or firewall that dropped the flow): only a
client-side deadline can notice. The deadline must raise the retriable SourceUnavailable,
and the source must work again on fresh connections afterwards.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from syncengine.errors import SourceUnavailable
from syncengine.sources.postgres import deadline
from syncengine.sources.postgres.chunks import read_copy
from tests.integration.pgsource.pgsource_helpers import execute, make_source
from tests.reliability.rel_proxy import proxied as through_proxy

#: psycopg answers a cancelled query by sending a cancel request and waiting up to 5 s for
#: the server to confirm; on a silent connection that wait runs out. Plus a loaded machine.
GRACE = 20.0


@pytest.fixture
def proxied(pg_dsn):
    """(DSN through a fresh proxy, the proxy)."""
    with through_proxy(pg_dsn) as pair:
        yield pair


async def wait_until(check, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "condition not reached"
        await asyncio.sleep(0.05)


def test_catalog_query_on_a_half_open_connection_fails_within_the_deadline(pg_dsn, proxied):
    dsn, proxy = proxied
    execute(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY)")

    async def scenario():
        source = make_source(dsn, ["t"], query_timeout=1)
        try:
            await source.open()
            await source.current_position()
            assert proxy.half_open() == 1  # the catalog connection
            started = time.monotonic()
            with pytest.raises(SourceUnavailable, match="no answer within 1 s") as info:
                await source.current_position()
            took = time.monotonic() - started
            # the lost connection is closed, not reused: the next call reconnects
            assert await source.current_position()
            return info.value, took
        finally:
            await source.close()

    error, took = asyncio.run(scenario())
    assert error.retriable
    assert "pg_current_wal_lsn" in str(error) and "presumed lost" in str(error)
    assert 1 <= took < 1 + GRACE


def test_heartbeat_on_a_silent_side_connection_ends_the_stream(pg_dsn, proxied):
    dsn, proxy = proxied
    execute(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY)")

    async def scenario():
        source = make_source(dsn, ["t"], heartbeat=0.2, query_timeout=1)
        await source.open()

        async def consume():
            async for _ in source.stream(None):
                pass

        task = asyncio.create_task(consume())
        try:
            # catalog + replication + heartbeat connections (slot creation used a fourth)
            await wait_until(lambda: proxy.open_connections() >= 3 or task.done())
            await asyncio.sleep(0.5)
            proxy.half_open()
            started = time.monotonic()
            with pytest.raises(SourceUnavailable, match="pg_logical_emit_message"):
                await asyncio.wait_for(task, 1 + GRACE)
            return time.monotonic() - started
        finally:
            task.cancel()
            await source.close()

    # the replication stream alone would need 30 s to call its connection silent
    assert asyncio.run(scenario()) < 1 + GRACE


def test_copy_reads_are_bounded_by_progress_not_by_their_length(proxied):
    dsn, proxy = proxied
    # one wide row (flushed at once) every 0.1 s for 2 s: longer than the 1 s bulk limit
    slow = sql.SQL(
        "COPY (SELECT repeat('x', 20000), pg_sleep(0.1) FROM generate_series(1, 20)) TO STDOUT"
    )

    async def scenario():
        conn = await deadline.connect(dsn, 0.1, autocommit=True)  # bulk limit: 10 × 0.1 s
        try:
            data = await read_copy(conn, slow)
            proxy.half_open()
            started = time.monotonic()
            with pytest.raises(SourceUnavailable, match="no answer within 1 s"):
                await read_copy(conn, sql.SQL("COPY (SELECT 1) TO STDOUT"))
            assert conn.closed
            return data, time.monotonic() - started
        finally:
            await conn.close()

    data, took = asyncio.run(scenario())
    assert data.count(b"\n") == 20
    assert took < 1 + GRACE


def test_the_dsn_wins_over_the_connection_defaults(pg_dsn):
    dsn = make_conninfo(pg_dsn, tcp_user_timeout="4321", keepalives_idle="7")

    async def scenario():
        conn = await make_source(dsn, ["t"], query_timeout=9).connect()
        try:
            options = {o.keyword.decode(): (o.val or b"").decode() for o in conn.pgconn.info}
            sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
            try:
                user_timeout = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
                idle = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
            finally:
                sock.close()
            return options, user_timeout, idle, conn.query_timeout
        finally:
            await conn.close()

    options, user_timeout, idle, query_timeout = asyncio.run(scenario())
    assert (options["tcp_user_timeout"], options["keepalives_idle"]) == ("4321", "7")
    assert (options["connect_timeout"], options["keepalives_count"]) == ("10", "3")
    assert (user_timeout, idle) == (4321, 7)  # libpq applied them to the socket
    assert query_timeout == 9
