"""The bulk COPY reader against a real server: same bytes as psycopg's row-by-row reader,
server errors surface as psycopg errors, and the connection is usable afterwards."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from psycopg import sql

from syncengine.sources.postgres.copyout import copy_out, copy_out_into

QUERY = sql.SQL(
    "COPY (SELECT g, repeat(md5(g::text), g % 40), CASE WHEN g % 7 = 0 THEN NULL ELSE "
    "E'quote \" comma , newline \\n' || g END FROM generate_series(1, 20000) g) "
    "TO STDOUT (FORMAT csv)"
)


async def reference(conn: psycopg.AsyncConnection) -> bytes:
    parts = []
    async with conn.cursor().copy(QUERY) as copy:
        async for data in copy:
            parts.append(bytes(data))
    return b"".join(parts)


def test_copy_out_reads_what_psycopg_reads(pg_dsn):
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
            calls = []
            data = await copy_out(conn, QUERY, lambda: calls.append(1))
            assert data == await reference(conn)
            assert data.count(b"\n") >= 20000
            # the connection is idle again, inside the same transaction
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            cur = await conn.execute("SELECT 42")
            assert await cur.fetchone() == (42,)
            empty = sql.SQL("COPY (SELECT 1 WHERE false) TO STDOUT (FORMAT csv)")
            assert await copy_out(conn, empty, lambda: None) == b""

    asyncio.run(scenario())


def test_copy_out_raises_server_errors_and_recovers(pg_dsn):
    async def scenario() -> None:
        async with await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True) as conn:
            missing = sql.SQL("COPY (SELECT * FROM no_such_table) TO STDOUT")
            with pytest.raises(psycopg.errors.UndefinedTable):
                await copy_out(conn, missing, lambda: None)
            failing = sql.SQL(
                "COPY (SELECT 1 / (5000 - g) FROM generate_series(1, 10000) g) TO STDOUT"
            )  # fails after streaming some rows
            with pytest.raises(psycopg.errors.DivisionByZero):
                await copy_out(conn, failing, lambda: None)
            with pytest.raises(psycopg.ProgrammingError):
                await copy_out(conn, sql.SQL("SELECT 1"), lambda: None)
            cur = await conn.execute("SELECT 1")
            assert await cur.fetchone() == (1,)

    asyncio.run(scenario())


def test_concurrent_copies_take_turns(pg_dsn):
    """The loop reads what the kernel holds without waiting, but never more than a bounded
    number of refills in a row: two snapshot workers on one event loop both keep moving."""
    big = sql.SQL(
        "COPY (SELECT g, repeat('x', 90) FROM generate_series(1, 150000) g) "
        "TO STDOUT (FORMAT binary)"
    )
    order: list[str] = []

    async def one(conn: psycopg.AsyncConnection, name: str) -> int:
        async def write(piece: bytes) -> None:
            order.append(name)

        return await copy_out_into(conn, big, lambda: None, write, piece_bytes=1 << 16)

    async def scenario() -> None:
        # both connected first: only the copies themselves run side by side
        async with (
            await psycopg.AsyncConnection.connect(pg_dsn) as a,
            await psycopg.AsyncConnection.connect(pg_dsn) as b,
        ):
            assert await asyncio.gather(one(a, "a"), one(b, "b")) == [150001, 150001]

    asyncio.run(scenario())
    # each wrote ~250 pieces; neither finished before the other got going
    first_end = min(len(order) - order[::-1].index(n) for n in "ab")
    assert {"a", "b"} <= set(order[: first_end - 1])
    switches = sum(1 for x, y in zip(order, order[1:], strict=False) if x != y)
    assert switches >= 10, order
