"""Backfill Postgres → Mongo holds a bounded amount of data whatever the table size.

Peak RSS of a backfill is set by the pieces of snapshot chunks in flight (``batch.max_rows``
rows each, not ``snapshot_chunk_rows``): at most ``2 × (parallel + 1)`` queued or being applied
and one parsed per worker waiting for its turn, the workers' COPYs paused meanwhile. Nothing
may pile up across pieces or chunks: not the pieces' tables, not the batches, not per-row
Python objects (documents, ``_id`` sets, shadow rows).
Memory figures are too noisy to assert on small tables, so this counts the structures
themselves (weak references to every chunk and batch, and the interpreter's gc-tracked objects)
at every apply of a ten-chunk backfill. Measured peak RSS: docs/targets.md, MongoDB.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

import psycopg
from pymongo import MongoClient

from syncengine.config.models import PipelineConfig
from syncengine.runtime import runner
from syncengine.runtime.pipeline import Pipeline
from syncengine.sources.postgres import chunks as chunk_reads
from syncengine.sources.postgres import snapshot
from syncengine.state import SQLiteStateStore

ROWS = 4_000
CHUNK_ROWS = 400  # ten chunks
MAX_ROWS = 200  # two batches per chunk
PARALLEL = 2


def test_backfill_holds_a_bounded_number_of_chunks_and_batches(
    pg_dsn, mongo_uri, mongo_db, monkeypatch
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric(12,2), "
            "attrs jsonb, created timestamptz)"
        )
        conn.execute(
            "INSERT INTO items SELECT i, 'name ' || i, i / 100.0, "
            "jsonb_build_object('n', i, 'tags', jsonb_build_array('a', i)), "
            "'2026-01-01'::timestamptz + i * interval '1 minute' "
            "FROM generate_series(1, %s) i",
            (ROWS,),
        )
    pieces: list[weakref.ref[Any]] = []
    batches: list[weakref.ref[Any]] = []
    read_text, read_batch = chunk_reads.csv_to_text_columns, snapshot.read_batch

    def tracked_text(*args: Any) -> Any:
        text = read_text(*args)
        pieces.append(weakref.ref(text))
        return text

    def tracked_batch(*args: Any) -> Any:
        batch = read_batch(*args)
        batches.append(weakref.ref(batch))
        return batch

    monkeypatch.setattr(chunk_reads, "csv_to_text_columns", tracked_text)
    monkeypatch.setattr(snapshot, "read_batch", tracked_batch)
    #: per apply: (piece tables alive, batches alive, gc-tracked objects)
    seen: list[tuple[int, int, int]] = []

    async def backfill() -> int:
        config = PipelineConfig.model_validate(
            {
                "source": {
                    "type": "postgres",
                    "dsn": pg_dsn,
                    "tables": ["public.items"],
                    "heartbeat": 0,
                    "snapshot_chunk_rows": CHUNK_ROWS,
                },
                "target": {"type": "mongo", "uri": mongo_uri, "database": mongo_db},
                "batch": {"max_rows": MAX_ROWS},
            }
        )
        pipeline = Pipeline("mem", config, SQLiteStateStore(":memory:"))
        process = pipeline.process

        async def counting(group: Any, position: Any, target: Any = None) -> Any:
            report = await process(group, position, target=target)
            gc.collect()
            alive = (sum(r() is not None for r in pieces), sum(r() is not None for r in batches))
            seen.append((*alive, len(gc.get_objects())))
            return report

        pipeline.process = counting  # type: ignore[method-assign]
        await pipeline.open()
        try:
            return await runner.backfill(pipeline, parallel=PARALLEL)
        finally:
            await pipeline.close()

    assert asyncio.run(backfill()) == ROWS
    with MongoClient(mongo_uri) as client:
        ids = [d["_id"] for d in client[mongo_db]["items"].find({}, {"_id": 1})]
    assert sorted(ids) == list(range(1, ROWS + 1))  # none lost, none twice

    # two pieces per chunk, and one empty piece for the last range, which is empty
    assert len(pieces) == ROWS // MAX_ROWS + 1
    assert len(seen) == ROWS // MAX_ROWS + 1  # and one empty batch for it
    # the reader's slots, and one piece per worker parsed and waiting for a slot
    assert max(c for c, _, _ in seen) <= 2 * (PARALLEL + 1) + PARALLEL
    assert max(b for _, b, _ in seen) <= 1  # only the batch being applied
    # per-row state would add thousands of objects (4,000 rows, 8,000 documents with shadows)
    settled = seen[2][2]
    assert max(n for _, _, n in seen[2:]) - settled < ROWS // 4, seen
