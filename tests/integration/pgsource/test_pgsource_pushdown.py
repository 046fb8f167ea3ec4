"""Mapping filters pushed into the Postgres snapshot, proven by what the server executed.

``pg_stat_statements`` (preloaded by the session cluster, see tests/conftest.py) records every
``COPY (SELECT …)`` a chunk read sent, with the rows it returned: each chunk query of a filtered
table must carry the OR of its mappings' filters (ANDed with ``backfill --where``), the server
must have returned only the matching rows, and the target must still be exact — including rows
that leave the filter by a later update (the stream is filtered by the engine, not the server).
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
import pytest

from syncengine.config.models import PipelineConfig
from syncengine.runtime import runner
from syncengine.runtime.pipeline import Pipeline
from syncengine.state import SQLiteStateStore
from tests.integration.pgsource.pgsource_helpers import execute
from tests.statements import track_statements

ROWS = 2000
PUSHED = '("status" = \'open\') OR ("total" >= 950)'


def pipeline(src: str, tgt: str, state: SQLiteStateStore) -> Pipeline:
    config = PipelineConfig.model_validate(
        {
            "source": {
                "type": "postgres",
                "dsn": src,
                "tables": ["public.orders", "public.notes"],
                "heartbeat": 0,
                "snapshot_chunk_rows": 100,
            },
            "target": {"type": "postgres", "dsn": tgt},
            "mappings": [
                # two mappings read orders: the server gets the OR of their filters
                {"source": "public.orders", "target": "open_orders", "filter": "status = 'open'"},
                {"source": "public.orders", "target": "big_orders", "filter": "total >= 950"},
                # a filter with a function is not pushed: the mapping filters after reading
                {"source": "public.notes", "filter": "lower(body) = 'keep'"},
            ],
        }
    )
    return Pipeline("pushdown", config, state)


def copies(dsn: str, table: str) -> list[tuple[str, int]]:
    """(text, rows) of each distinct ``COPY`` of ``table`` the server ran in this database."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        found = conn.execute(
            "SELECT query, rows FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
            "WHERE d.datname = current_database() AND query LIKE %s ORDER BY query",
            (f'COPY (SELECT % FROM "public"."{table}" WHERE %',),
        ).fetchall()
    return [(q, int(n)) for q, n in found]


def forget_statements(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_stat_statements_reset(0, oid, 0) FROM pg_database "
            "WHERE datname = current_database()"
        )


def target_ids(dsn: str, table: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(f"SELECT id FROM {table} ORDER BY id")]


def source_ids(dsn: str, condition: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(f"SELECT id FROM orders WHERE {condition} ORDER BY id")]


@pytest.fixture
def statements(pg_dsn: str) -> None:
    track_statements(pg_dsn)
    forget_statements(pg_dsn)


@pytest.mark.integration
def test_snapshot_chunks_read_only_the_rows_some_mapping_keeps(
    pg_dsn, pg_target_dsn, statements, caplog
):
    caplog.set_level(logging.INFO, logger="syncengine.sources.postgres")
    execute(
        pg_dsn,
        "CREATE TABLE orders (id bigint PRIMARY KEY, status text, total int NOT NULL)",
        "INSERT INTO orders SELECT g, CASE WHEN g % 10 = 0 THEN 'open' WHEN g % 7 = 0 THEN NULL "
        f"ELSE 'closed' END, g % 1000 FROM generate_series(1, {ROWS}) g",
        "CREATE TABLE notes (id int PRIMARY KEY, body text)",
        "INSERT INTO notes SELECT g, CASE WHEN g % 2 = 0 THEN 'KEEP' ELSE 'drop' END "
        "FROM generate_series(1, 40) g",
    )
    state = SQLiteStateStore(":memory:")

    async def backfill(where: str | None) -> None:
        p = pipeline(pg_dsn, pg_target_dsn, state)
        await p.open()
        try:
            await runner.backfill(p, where=where)
        finally:
            await p.close()

    asyncio.run(backfill("id <= 1500"))  # exported snapshot: a fresh slot

    matching = source_ids(pg_dsn, f"id <= 1500 AND ({PUSHED})")
    read = copies(pg_dsn, "orders")
    assert len(read) >= 2  # several chunks (of 100 filtered rows each)
    for query, _ in read:
        assert f"(({PUSHED}) AND (id <= 1500))" in query, query
    # the server sent exactly the rows some mapping keeps, not the 1500 the range holds
    assert sum(n for _, n in read) == len(matching) < 1500 // 4
    # not pushed: every row of notes was read, and the mapping kept the matching ones
    (notes,) = copies(pg_dsn, "notes")
    assert "lower" not in notes[0].lower() and notes[1] == 40
    assert target_ids(pg_target_dsn, "notes") == list(range(2, 41, 2))
    assert "public.notes: mapping filter not pushed into the snapshot" in caplog.text
    assert target_ids(pg_target_dsn, "open_orders") == source_ids(
        pg_dsn, "id <= 1500 AND status = 'open'"
    )
    assert target_ids(pg_target_dsn, "big_orders") == source_ids(
        pg_dsn, "id <= 1500 AND total >= 950"
    )

    # Again, now that the slot exists: the watermark-reconciled chunk reads push it too.
    forget_statements(pg_dsn)
    asyncio.run(backfill(None))
    read = copies(pg_dsn, "orders")
    assert len(read) >= 2
    for query, _ in read:
        assert PUSHED in query, query
    assert sum(n for _, n in read) == len(source_ids(pg_dsn, PUSHED))
    assert target_ids(pg_target_dsn, "open_orders") == source_ids(pg_dsn, "status = 'open'")

    # The stream: an update that makes a row leave the filter deletes it from the target.
    execute(
        pg_dsn,
        "UPDATE orders SET status = 'closed' WHERE id IN (10, 20)",
        "UPDATE orders SET total = 1 WHERE id = 1950",
        "UPDATE orders SET status = 'open' WHERE id = 11",
    )

    async def stream() -> None:
        p = pipeline(pg_dsn, pg_target_dsn, state)
        await p.open()
        try:
            await runner.sync_once(p)
        finally:
            await p.close()

    asyncio.run(stream())
    open_now = target_ids(pg_target_dsn, "open_orders")
    assert 10 not in open_now and 20 not in open_now and 11 in open_now
    assert open_now == source_ids(pg_dsn, "status = 'open'")
    assert target_ids(pg_target_dsn, "big_orders") == source_ids(pg_dsn, "total >= 950")
