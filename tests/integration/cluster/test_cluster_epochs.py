"""Fencing epochs: a stream attempt whose pipeline was claimed by a later attempt cannot commit.

No Temporal here: :class:`~syncengine.cluster.streamrun.StreamAttempt` is what a stream activity
runs, called directly on real Postgres servers. The late commit is made certain, not timed: the
test holds a row lock in the target on the key a change is about to be applied to, so the
attempt's group waits inside its transaction (as a worker paused mid-commit would), while a
second claim of the pipeline commits. When the lock is let go, the group must be refused and
rolled back whole: row, shadow and checkpoint as they were. The next attempt resumes from the
checkpoint and applies the change once.
"""

from __future__ import annotations

import asyncio
import textwrap

import psycopg
import pytest

from syncengine.cluster.streamrun import StreamAttempt
from syncengine.config import parse_config
from syncengine.errors import Fenced
from syncengine.state import SQLiteStateStore
from syncengine.targets.postgres import epochs
from tests.e2e.harness import execute, rows

TABLE = "CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL)"
CHECKPOINT = "SELECT position FROM _syncengine.checkpoints WHERE pipeline = 'p'"


def pipeline_config(src: str, tgt: str, max_rows: int = 1000):
    text = textwrap.dedent(
        f"""
        pipelines:
          p:
            source: {{type: postgres, dsn: "{src}", tables: [public.counters]}}
            target: {{type: postgres, dsn: "{tgt}"}}
            batch: {{max_rows: {max_rows}, max_wait: 50ms}}
        """
    )
    return parse_config(text, env={}).pipelines["p"]


async def _until(condition, timeout: float = 60.0) -> None:
    def holds() -> bool:
        try:
            return bool(condition())
        except psycopg.errors.UndefinedTable:  # not created yet
            return False

    async def poll() -> None:
        while not await asyncio.to_thread(holds):
            await asyncio.sleep(0.1)

    await asyncio.wait_for(poll(), timeout)


def _target_n(dsn: str, key: int) -> int | None:
    found = rows(dsn, "SELECT n FROM counters WHERE id = %s", (key,))
    return int(found[0][0]) if found else None


def _waiting_on_a_lock(dsn: str) -> bool:
    return bool(
        rows(
            dsn,
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'",
        )
    )


def test_a_commit_after_a_later_claim_is_refused_whole(tmp_path, pg_dsn, pg_target_dsn):
    execute(pg_dsn, TABLE, "INSERT INTO counters SELECT g, 0 FROM generate_series(1, 10) g")
    config = pipeline_config(pg_dsn, pg_target_dsn)

    async def scenario() -> None:
        first = StreamAttempt("p", config, SQLiteStateStore(tmp_path / "a.db"), "worker-a")
        stop = asyncio.Event()
        running = asyncio.ensure_future(first.run(stop, 3600))
        await _until(lambda: _target_n(pg_target_dsn, 10) == 0 and rows(pg_target_dsn, CHECKPOINT))
        assert first.epoch == 1
        # the stream is live: a change arrives and is applied
        execute(pg_dsn, "UPDATE counters SET n = 1 WHERE id = 1")
        await _until(lambda: _target_n(pg_target_dsn, 1) == 1)
        before = rows(pg_target_dsn, CHECKPOINT)

        holder = await psycopg.AsyncConnection.connect(pg_target_dsn)
        await holder.execute("UPDATE counters SET n = n WHERE id = 5")  # locked, not committed
        execute(pg_dsn, "UPDATE counters SET n = 7 WHERE id = 5")
        await _until(lambda: _waiting_on_a_lock(pg_target_dsn))  # the group is mid-transaction
        async with await psycopg.AsyncConnection.connect(pg_target_dsn, autocommit=True) as c:
            assert await epochs.claim(c, "p", "worker-b") == 2  # another attempt takes over
        await holder.rollback()
        await holder.close()
        with pytest.raises(Fenced, match="epoch 1 is stale .* epoch 2, held by worker-b"):
            await asyncio.wait_for(running, 60)
        assert _target_n(pg_target_dsn, 5) == 0  # the refused group left nothing
        assert rows(pg_target_dsn, CHECKPOINT) == before

        # the next attempt resumes from the checkpoint and applies the change once
        second = StreamAttempt("p", config, SQLiteStateStore(tmp_path / "b.db"), "worker-c")
        stop = asyncio.Event()
        running = asyncio.ensure_future(second.run(stop, 3600))
        await _until(lambda: _target_n(pg_target_dsn, 5) == 7)
        assert second.epoch == 3
        stop.set()
        await asyncio.wait_for(running, 60)

    asyncio.run(scenario())
    query = "SELECT id, n FROM counters ORDER BY id"
    assert rows(pg_target_dsn, query) == rows(pg_dsn, query)
    assert rows(pg_target_dsn, "SELECT epoch, holder FROM _syncengine.epochs") == [(3, "worker-c")]


def test_a_chunk_committed_under_a_stale_epoch_is_refused(tmp_path, pg_dsn, pg_target_dsn):
    """The initial backfill's passthrough chunks check the epoch too: a claim between two
    chunks makes the next chunk's commit (rows and done-mark) roll back."""
    execute(pg_dsn, TABLE, "INSERT INTO counters SELECT g, 0 FROM generate_series(1, 10) g")
    config = pipeline_config(pg_dsn, pg_target_dsn)

    async def scenario() -> None:
        from syncengine.runtime.pipeline import Pipeline

        pipeline = Pipeline("p", config, SQLiteStateStore(tmp_path / "s.db"))
        try:
            await pipeline.target.open()
            assert await pipeline.target.claim_epoch("worker-a") == 1
            async with await psycopg.AsyncConnection.connect(pg_target_dsn, autocommit=True) as c:
                await epochs.claim(c, "p", "worker-b")
            await pipeline.source.open()
            with pytest.raises(Fenced):
                from syncengine.runtime.runner import backfill

                await backfill(pipeline)
        finally:
            await pipeline.close()

    asyncio.run(scenario())
    assert rows(pg_target_dsn, "SELECT count(*) FROM counters") == [(0,)]
    assert rows(pg_target_dsn, "SELECT count(*) FROM _syncengine.chunks") == [(0,)]
    assert rows(pg_target_dsn, CHECKPOINT) == []
