"""A decoded snapshot holds a few batches, not chunks: memory is bounded by ``batch.max_rows``
whatever ``snapshot_chunk_rows`` is (issue 16). Arrow's allocations (the CSV pieces and the
batches made of them) are sampled while a slow consumer takes the batches; the reader must
wait for it instead of reading its chunk ahead."""

from __future__ import annotations

import asyncio

import pyarrow as pa

from tests.integration.pgsource.pgsource_helpers import execute, make_source

ROWS = 40_000
MAX_ROWS = 1_000


def _peak_bytes(dsn: str, pipeline: str, chunk_rows: int) -> tuple[int, int, int]:
    """(peak Arrow bytes allocated while consuming, rows read, largest batch)."""
    source = make_source(
        dsn, ["wide"], pipeline=pipeline, max_rows=MAX_ROWS, snapshot_chunk_rows=chunk_rows
    )

    async def run() -> tuple[int, int, int]:
        await source.open()
        base = pa.total_allocated_bytes()
        peak = rows = largest = 0
        try:
            stream = source.snapshot(parallel=2)
            async for batch in stream:
                rows += batch.num_rows
                largest = max(largest, batch.num_rows)
                await asyncio.sleep(0.002)  # a consumer slower than the reader
                peak = max(peak, pa.total_allocated_bytes() - base)
                del batch
            await stream.aclose()
        finally:
            await source.close()
        return peak, rows, largest

    return asyncio.run(run())


def test_decoded_snapshot_memory_does_not_grow_with_chunk_size(pg_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE wide (id bigint PRIMARY KEY, body text NOT NULL)",
        f"INSERT INTO wide SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, {ROWS}) g",
    )
    small, small_rows, small_largest = _peak_bytes(pg_dsn, "small", 2_000)
    big, big_rows, big_largest = _peak_bytes(pg_dsn, "big", ROWS)
    execute(pg_dsn, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots")
    assert small_rows == big_rows == ROWS
    assert small_largest == big_largest == MAX_ROWS
    # one chunk of the big plan is 40,000 rows × ~270 bytes ≈ 11 MB; a batch ≈ 0.3 MB
    assert big < 1.5 * small + (1 << 20), (big, small)
    assert big < 4 << 20, big
