"""A multi-million-row transaction streams in bounded batches; reader memory stays flat.

Marked slow (``--runslow``). ``SYNCENGINE_BIGTXN_ROWS`` sets the size (default 2,000,000).
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from syncengine.sources.base import resume_position
from tests.integration.pgsource.pgsource_helpers import drain, execute, make_source

ROWS = int(os.environ.get("SYNCENGINE_BIGTXN_ROWS", "2000000"))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow
def test_big_transaction_memory_is_bounded(pg_dsn):
    execute(pg_dsn, "CREATE TABLE big (id int PRIMARY KEY, pad text)")

    async def scenario():
        source = make_source(pg_dsn, ["big"], pipeline="big", max_rows=10_000)
        await source.open()
        await drain(source, None)
        start = await source.current_position()
        execute(
            pg_dsn,
            f"INSERT INTO big SELECT g, repeat('x', 50) FROM generate_series(1, {ROWS}) g",
        )
        until = await source.current_position()
        baseline, peak, rows, sizes, resumes = rss_mb(), 0.0, 0, set(), []
        started = time.perf_counter()
        async for batch in source.stream(start, until):
            rows += batch.num_rows
            sizes.add(batch.num_rows)
            if resume_position(batch):
                resumes.append((rows, resume_position(batch)))
            peak = max(peak, rss_mb())
        elapsed = time.perf_counter() - started
        await source.close()
        return baseline, peak, rows, sizes, resumes, elapsed

    baseline, peak, rows, sizes, resumes, elapsed = asyncio.run(scenario())
    print(
        f"\nbig transaction: {rows} rows in {elapsed:.1f}s ({rows / elapsed:,.0f} rows/s), "
        f"RSS baseline {baseline:.0f} MB, peak {peak:.0f} MB"
    )
    assert rows == ROWS
    assert max(sizes) <= 10_000
    # the commit boundary is only handed out once, after the last row of the transaction
    assert [r for r, _ in resumes] == [ROWS]
    # a whole transaction of 2M rows × ~60 bytes would be well over 120 MB of Python objects
    assert peak - baseline < 150
