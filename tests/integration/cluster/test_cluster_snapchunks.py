"""A stream's initial snapshot spread over workers: chunks read at different moments, reconciled
by watermarks, then the stream from where the slot began (``syncengine.cluster.snapchunks``).

No Temporal here: the plan, the chunk copies and the stream attempt are what the activities
run, called directly on real Postgres servers.

* Writers update, delete and insert rows (one column is an out-of-line TOAST value the updates
  leave unchanged, so pgoutput does not resend it) while the chunks are copied in an order of
  their own, two at a time, each on its own state file (as on separate machines); the stream
  then starts at the plan's position. The target ends equal to the source, TOAST values
  included, although no two chunks were read at one moment.
* A chunk attempt paused inside its commit (held on a table lock the test holds in the target)
  while a later attempt claims the chunk's fence: its commit is refused and rolls back whole.
"""

from __future__ import annotations

import asyncio
import random
import textwrap
import threading
import time

import psycopg
import pytest

from syncengine.cluster import snapchunks
from syncengine.cluster.streamrun import StreamAttempt
from syncengine.config import parse_config
from syncengine.errors import Fenced
from syncengine.state import SQLiteStateStore
from syncengine.targets.postgres import epochs
from tests.e2e.harness import execute, rows
from tests.integration.cluster.test_cluster_epochs import _until, _waiting_on_a_lock

ROWS = 6_000
CHUNK_ROWS = 500


def table(n: int = ROWS) -> tuple[str, ...]:
    return (
        "CREATE TABLE items (id int PRIMARY KEY, n bigint NOT NULL, blob text)",
        "ALTER TABLE items ALTER COLUMN blob SET STORAGE EXTERNAL",  # out of line, uncompressed
        "INSERT INTO items SELECT g, 0, CASE WHEN g % 10 = 0 THEN repeat(md5(g::text), 100) "
        f"END FROM generate_series(1, {n}) g",
    )


#: the blob compared by digest: equal rows, TOAST values included
QUERY = "SELECT id, n, md5(blob) FROM items ORDER BY id"


def pipeline_config(src: str, tgt: str):
    text = textwrap.dedent(
        f"""
        pipelines:
          p:
            source: {{type: postgres, dsn: "{src}", tables: [public.items],
                     snapshot_chunk_rows: {CHUNK_ROWS}}}
            target: {{type: postgres, dsn: "{tgt}"}}
            batch: {{max_rows: 200, max_wait: 50ms}}
        """
    )
    return parse_config(text, env={}).pipelines["p"]


class Writers:
    """Updates of ``n`` (the blob unchanged: not resent), deletes and inserts, on keys all
    over the table, one transaction each."""

    def __init__(self, dsn: str, keys: int = ROWS) -> None:
        self.dsn = dsn
        self.keys = keys
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._write)
        self.writes = 0

    def _write(self) -> None:
        pick = random.Random(7)
        fresh = self.keys
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                key = pick.randint(1, self.keys)
                roll = pick.random()
                if roll < 0.8:
                    conn.execute("UPDATE items SET n = n + 1 WHERE id = %s", (key,))
                elif roll < 0.9:
                    conn.execute("DELETE FROM items WHERE id = %s", (key,))
                else:
                    fresh += 1
                    conn.execute(
                        "INSERT INTO items VALUES (%s, 0, repeat(md5(%s::text), 100))",
                        (fresh, fresh),
                    )
                self.writes += 1
                time.sleep(0.002)

    def __enter__(self) -> Writers:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def test_chunks_read_apart_then_the_stream_end_equal_to_the_source(tmp_path, pg_dsn, pg_target_dsn):
    execute(pg_dsn, *table())
    config = pipeline_config(pg_dsn, pg_target_dsn)

    async def scenario(writers: Writers) -> None:
        spread = await snapchunks.plan("p", config, SQLiteStateStore(tmp_path / "plan.db"))
        # a bound every CHUNK_ROWS rows, the last chunk open; the writers run already, so the
        # table holds a few rows more or fewer than ROWS and the last bound may or may not fit
        assert spread.at and spread.tasks[-1].upper is None
        assert ROWS // CHUNK_ROWS <= len(spread.tasks) <= ROWS // CHUNK_ROWS + 1
        assert rows(pg_target_dsn, "SELECT count(*) FROM items") == [(0,)]  # created, empty
        assert rows(pg_target_dsn, "SELECT count(*) FROM _syncengine.checkpoints") == [(0,)]
        tasks = list(spread.tasks)
        random.Random(3).shuffle(tasks)
        room = asyncio.Semaphore(2)

        async def copy(i: int) -> int:
            async with room:
                state = SQLiteStateStore(tmp_path / f"worker{i % 3}.db")
                await asyncio.sleep(0.05)  # writes between the reads
                return await snapchunks.copy_chunk(
                    "p", config, state, tasks[i], spread.at, f"worker{i % 3}"
                )

        copied = await asyncio.gather(*(copy(i) for i in range(len(tasks))))
        assert sum(copied) >= ROWS * 0.8
        assert writers.writes > 100  # the chunks were read under writes
        stream = StreamAttempt("p", config, SQLiteStateStore(tmp_path / "s.db"), "w", spread.at)
        stop = asyncio.Event()
        running = asyncio.ensure_future(stream.run(stop, 3600))
        await asyncio.sleep(2)
        writers.__exit__()
        await _until(lambda: rows(pg_target_dsn, QUERY) == rows(pg_dsn, QUERY), 120)
        stop.set()
        await asyncio.wait_for(running, 60)

    with Writers(pg_dsn) as writers:
        asyncio.run(scenario(writers))
    assert rows(pg_target_dsn, QUERY) == rows(pg_dsn, QUERY)
    (checkpoint,) = rows(pg_target_dsn, "SELECT position FROM _syncengine.checkpoints")[0]
    assert checkpoint > "0"


def test_a_chunk_commit_after_a_later_claim_is_refused_whole(tmp_path, pg_dsn, pg_target_dsn):
    execute(pg_dsn, *table())
    config = pipeline_config(pg_dsn, pg_target_dsn)
    state = SQLiteStateStore(tmp_path / "s.db")

    async def scenario() -> None:
        spread = await snapchunks.plan("p", config, state)
        task = spread.tasks[0]  # ids 1..500
        fence = snapchunks.fence_name("p", task.table, task.chunk)
        with psycopg.connect(pg_target_dsn) as holder:
            # a lock its writes wait for, taken without an xid: a write would make the chunk's
            # temporary slot wait for this transaction to end before the chunk is even read
            holder.execute("LOCK TABLE items IN SHARE MODE")
            copying = asyncio.ensure_future(
                snapchunks.copy_chunk("p", config, state, task, spread.at, "paused")
            )
            await _until(lambda: _waiting_on_a_lock(pg_target_dsn))  # inside its commit
            other = await psycopg.AsyncConnection.connect(pg_target_dsn, autocommit=True)
            async with other:
                assert await epochs.claim(other, fence, "successor") == 2
            holder.rollback()
        with pytest.raises(Fenced, match="epoch 1 is stale .* epoch 2, held by successor"):
            await asyncio.wait_for(copying, 60)

    asyncio.run(scenario())
    assert rows(pg_target_dsn, "SELECT count(*) FROM items") == [(0,)]  # nothing of it landed


def test_a_slot_moved_past_the_plan_makes_the_stream_backfill(tmp_path, pg_dsn, pg_target_dsn):
    """The plan's position is committed as the first checkpoint only while the slot is still
    there: a slot acknowledged past it (the checkpoint was reset after the stream ran) means
    changes after it were consumed, so the attempt backfills instead."""
    execute(pg_dsn, *table(1_000))
    config = pipeline_config(pg_dsn, pg_target_dsn)

    async def scenario() -> str:
        spread = await snapchunks.plan("p", config, SQLiteStateStore(tmp_path / "plan.db"))
        execute(pg_dsn, "UPDATE items SET n = 3 WHERE id = 7")
        execute(
            pg_dsn,
            "SELECT pg_replication_slot_advance('syncengine_p', pg_current_wal_lsn())",
        )
        stream = StreamAttempt("p", config, SQLiteStateStore(tmp_path / "s.db"), "w", spread.at)
        stop = asyncio.Event()
        running = asyncio.ensure_future(stream.run(stop, 3600))
        await _until(lambda: rows(pg_target_dsn, QUERY) == rows(pg_dsn, QUERY), 60)
        stop.set()
        await asyncio.wait_for(running, 60)
        return spread.at

    at = asyncio.run(scenario())
    (checkpoint,) = rows(pg_target_dsn, "SELECT position FROM _syncengine.checkpoints")[0]
    assert checkpoint > at  # backfilled at a later position, not the plan's
    assert rows(pg_target_dsn, QUERY) == rows(pg_dsn, QUERY)
