"""Shared helpers for the Postgres source integration tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pyarrow as pa
import pytest

from syncengine.changes import ChangeBatch
from syncengine.config.models import BatchConfig, PostgresSourceConfig
from syncengine.sources.base import resume_position
from syncengine.sources.postgres.decodespawn import ENV
from syncengine.sources.postgres.source import PostgresSource
from syncengine.state import SQLiteStateStore


def make_source(
    dsn: str,
    tables: list[str],
    state: SQLiteStateStore | None = None,
    pipeline: str = "p",
    max_rows: int = 1000,
    **config: object,
) -> PostgresSource:
    config = {"heartbeat": 0, **config}
    cfg = PostgresSourceConfig(type="postgres", dsn=dsn, tables=tables, **config)
    return PostgresSource(
        pipeline,
        cfg,
        state or SQLiteStateStore(":memory:"),
        BatchConfig(max_rows=max_rows, max_wait=0.1),
    )


def execute(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


async def drain(source: PostgresSource, start: str | None) -> tuple[list[ChangeBatch], str | None]:
    """Every batch up to now, acknowledging resume positions like the runtime does."""
    until = await source.current_position()
    batches, last = [], start
    async for batch in source.stream(start, until):
        batches.append(batch)
        resume = resume_position(batch)
        if resume:
            await source.acknowledge(resume)
            last = resume
    return batches, last


async def first_rows(stream: AsyncIterator[ChangeBatch]) -> ChangeBatch:
    """The first batch with rows (the ones before carry only positions)."""
    async for batch in stream:
        if batch.num_rows:
            return batch
    raise AssertionError("the stream ended")


def changes_after(
    dsn: str, tables: list[str], setup: tuple[str, ...], changes: tuple[str, ...]
) -> list[ChangeBatch]:
    """The batches streamed for ``changes``, run once ``setup`` ran and the slot exists."""

    async def scenario() -> list[ChangeBatch]:
        execute(dsn, *setup)
        source = make_source(dsn, tables)
        await source.open()
        _, start = await drain(source, None)
        execute(dsn, *changes)
        batches, _ = await drain(source, start)
        await source.close()
        return batches

    return asyncio.run(scenario())


def rows(batches: list[ChangeBatch], table: str | None = None) -> list[dict]:
    out = []
    for batch in batches:
        if table is None or batch.table == table:
            out.extend(batch.data.to_pylist())
    return out


class DictModel:
    """A reference applier: the ChangeBatch apply semantics over a dict keyed by the key."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[tuple, dict]] = {}

    def apply(self, batch: ChangeBatch) -> None:
        table = self.tables.setdefault(batch.table, {})
        names = batch.data_columns
        unsent = {c: batch.unsent_mask(c) for c in batch.unsent_columns}
        for i, row in enumerate(batch.data.to_pylist()):
            op = row["_op"]
            if op == "t":
                table.clear()
                continue
            key = tuple(row[k] for k in batch.key)
            if op == "d":
                before = tuple(row.get("_before." + k, row[k]) for k in batch.key)
                table.pop(before if None not in before else key, None)
                continue
            values = {c: row[c] for c in names if not (c in unsent and unsent[c][i].as_py())}
            if op in ("c", "r"):
                table[key] = values
            else:
                before = tuple(row.get("_before." + k) for k in batch.key)
                old = table.pop(before, None) if None not in before and before != key else None
                table[key] = {**(old or table.get(key, {})), **values}


def table_state(dsn: str, table: str, key: str) -> dict[tuple, dict]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(f"SELECT * FROM {table} ORDER BY {key}")  # test-only fixed names
        names = [d.name for d in cur.description]
        return {(r[names.index(key)],): dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def as_table(batches: list[ChangeBatch]) -> pa.Table:
    return pa.concat_tables([b.data for b in batches if b.num_rows], promote_options="permissive")


@pytest.fixture(params=["inline", "process"])
def both_decode_modes(request, monkeypatch):
    """Run a test with decoding in the engine's process and in the decode process
    (sources/postgres/decodeproc.py): the batches must be the same."""
    monkeypatch.setenv(ENV, request.param)
    return request.param
