"""A daemon's first change group after it starts streaming imports nothing (Pipeline.warm_up).

What map, compaction, resolve and apply import on first use (Polars, the mapping compiler, the
conflict strategies) took 0.5 s in a started daemon's first group, while its changes waited
(pg_latency's p99 was that start, docs/benchmarks-findings.md F52). Run in a fresh interpreter:
the test process has imported all of it long ago.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from tests.integration.pgsource.pgsource_helpers import execute

SCRIPT = """
import asyncio, json, sys
import psycopg
from syncengine.config.models import PipelineConfig
from syncengine.runtime import runner
from syncengine.runtime.pipeline import Pipeline
from syncengine.state import SQLiteStateStore

src, tgt, warm = sys.argv[1], sys.argv[2], sys.argv[3] == "warm"

async def main():
    config = PipelineConfig.model_validate({
        "source": {"type": "postgres", "dsn": src, "tables": ["items"], "heartbeat": 0},
        "target": {"type": "postgres", "dsn": tgt},
    })
    pipeline = Pipeline("warm", config, SQLiteStateStore(":memory:"))
    await pipeline.open()
    try:
        start, _ = await runner.ensure_backfilled(pipeline)
        if warm:
            pipeline.warm_up()
        with psycopg.connect(src, autocommit=True) as conn:
            conn.execute("UPDATE items SET v = v + 1 WHERE id <= 3")
            conn.execute("DELETE FROM items WHERE id = 4")
        until = await pipeline.source.current_position()
        imported = []
        prepare, commit = pipeline.prepare, pipeline.commit
        before = {}

        async def preparing(group, position, **options):
            before.setdefault(id(group), set(sys.modules))
            prepared = await prepare(group, position, **options)
            prepared.group_id = id(group)
            return prepared

        async def committing(prepared):
            report = await commit(prepared)
            if any(b.num_rows for b in prepared.batches):
                imported.append(sorted(set(sys.modules) - before[prepared.group_id]))
            return report

        pipeline.prepare, pipeline.commit = preparing, committing
        await runner.stream(pipeline, start, until)
        print(json.dumps(imported))
    finally:
        await pipeline.close()

asyncio.run(main())
"""


def first_group_imports(src: str, tgt: str, warm: bool) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, src, tgt, "warm" if warm else "cold"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    groups = json.loads(done.stdout.strip().splitlines()[-1])
    assert groups, "no change group was applied"
    return groups[0]


@pytest.mark.parametrize("warm", [True, False])
def test_first_group_after_warm_up_imports_nothing(pg_dsn, pg_target_dsn, warm):
    execute(
        pg_dsn,
        "CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL)",
        "INSERT INTO items SELECT g, 0 FROM generate_series(1, 10) g",
    )
    imported = first_group_imports(pg_dsn, pg_target_dsn, warm)
    if warm:
        assert imported == []
    else:  # what the warm-up is for: without it the first group loads Polars and the rest
        assert "polars" in imported


def test_sync_once_warms_up_before_its_first_group(pg_dsn, pg_target_dsn, monkeypatch):
    """``sync --once`` starts importing the first group's modules in a thread once it knows
    changes wait, before it streams: they load while the stream starts, not in the first
    group's apply (the drain's slowest stage)."""
    from syncengine.config.models import PipelineConfig
    from syncengine.runtime import runner
    from syncengine.runtime.pipeline import Pipeline
    from syncengine.runtime.warmup import FIRST_GROUP_IMPORTS
    from syncengine.state import SQLiteStateStore

    execute(
        pg_dsn,
        "CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL)",
        "INSERT INTO items SELECT g, 0 FROM generate_series(1, 10) g",
    )
    events: list[object] = []
    monkeypatch.setattr(runner, "warm_up", lambda modules=(): events.append(tuple(modules)))
    config = PipelineConfig.model_validate(
        {
            "source": {"type": "postgres", "dsn": pg_dsn, "tables": ["items"], "heartbeat": 0},
            "target": {"type": "postgres", "dsn": pg_target_dsn},
        }
    )

    async def once() -> int:
        pipeline = Pipeline("once", config, SQLiteStateStore(":memory:"))
        prepare = pipeline.prepare

        async def watched(group, position, **options):
            if any(b.num_rows for b in group):
                events.append("group")
            return await prepare(group, position, **options)

        pipeline.prepare = watched  # type: ignore[method-assign]
        await pipeline.open()
        try:
            return (await runner.sync_once(pipeline))[1]
        finally:
            await pipeline.close()

    asyncio.run(once())  # the backfill (passed through: nothing to warm for it)
    events.clear()
    execute(pg_dsn, "UPDATE items SET v = v + 1 WHERE id <= 3")
    assert asyncio.run(once()) == 3
    assert events[:2] == [FIRST_GROUP_IMPORTS, "group"]
