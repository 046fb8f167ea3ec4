"""Chunk plans: a big table with a dense integer key is cut from its min and max, and the
chunks it gets cover every row exactly once, none bigger than ``chunk_rows``; a sparse key or a
small table keeps the ordered scan."""

from __future__ import annotations

import asyncio
import json

import psycopg

from syncengine.sources.postgres import chunks as chunk_module
from syncengine.sources.postgres.chunks import chunk_query, plan, table_shape
from syncengine.state.base import Chunk
from tests.integration.pgsource.pgsource_helpers import execute

ROWS = 120_000


def _plans(dsn: str, table: str, chunk_rows: int) -> tuple[list[Chunk], list[Chunk], list[int]]:
    """(the plan, the ordered scan's plan, the rows each chunk of the plan reads)."""

    async def run() -> tuple[list[Chunk], list[Chunk], list[int]]:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        try:
            shape = await table_shape(conn, f"public.{table}", ("id",))
            planned = await plan(conn, shape, chunk_rows, None)
            floor = chunk_module.SPAN_PLAN_MIN_ROWS
            chunk_module.SPAN_PLAN_MIN_ROWS = 1 << 62  # force the scan
            try:
                scanned = await plan(conn, shape, chunk_rows, None)
            finally:
                chunk_module.SPAN_PLAN_MIN_ROWS = floor
            counts = []
            for chunk in planned:
                query = chunk_query(shape, chunk, None)
                inner = query.as_string(conn).removeprefix("COPY (").rsplit(") TO STDOUT", 1)[0]
                cur = await conn.execute(f"SELECT count(*) FROM ({inner}) s")  # type: ignore[arg-type]
                row = await cur.fetchone()
                assert row is not None
                counts.append(row[0])
            return planned, scanned, counts
        finally:
            await conn.close()

    return asyncio.run(run())


def test_dense_integer_key_is_planned_from_min_and_max(pg_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE dense (id bigint PRIMARY KEY, v text)",
        # ids 1001..121000 with every 50th missing: dense, not contiguous
        f"INSERT INTO dense SELECT g, 'v' || g FROM generate_series(1001, {1000 + ROWS}) g "
        "WHERE g % 50 <> 0",
        "ANALYZE dense",
    )
    planned, scanned, counts = _plans(pg_dsn, "dense", 10_000)
    total = ROWS - ROWS // 50
    assert sum(counts) == total  # every row in exactly one chunk (ranges do not overlap)
    assert max(counts) <= 10_000
    assert len(planned) == 12  # 120,000 key values / 10,000
    # bounds are consecutive key values from the minimum, in the scan plan's format
    assert [json.loads(c.upper)[0] for c in planned[:-1]] == [
        str(1000 + 10_000 * i) for i in range(1, 12)
    ]
    assert planned[0].lower is None and planned[-1].upper is None
    assert len(scanned) == total // 10_000 + 1  # the scan cuts every 10,000th row instead


def test_sparse_key_keeps_the_ordered_scan(pg_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE sparse (id bigint PRIMARY KEY, v text)",
        f"INSERT INTO sparse SELECT g * 3, 'v' FROM generate_series(1, {ROWS}) g",
        "ANALYZE sparse",
    )
    planned, scanned, counts = _plans(pg_dsn, "sparse", 10_000)
    assert planned == scanned
    assert sum(counts) == ROWS


def test_small_or_unanalysed_table_keeps_the_ordered_scan(pg_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE fresh (id int PRIMARY KEY)",
        "INSERT INTO fresh SELECT generate_series(1, 3000)",
    )
    planned, scanned, counts = _plans(pg_dsn, "fresh", 500)
    assert planned == scanned and len(planned) == 7  # 3,000 rows / 500 + the open tail
    assert sum(counts) == 3000
