"""A chunk copied twice is copied once: what makes a retried chunk activity safe on any worker.

No Temporal here: :class:`~syncengine.cluster.chunkcopy.ChunkCopier` is what a chunk activity
runs, called directly on real Postgres servers, as two workers would (two copiers, each with its
own connections). The second attempt of a committed chunk finds its done-mark and writes
nothing; an attempt whose transaction died (rolled back) leaves nothing, and the next copies it.
"""

from __future__ import annotations

import asyncio
import textwrap

import psycopg
import pytest

from syncengine.cluster.chunkcopy import ChunkCopier
from syncengine.config import parse_config
from syncengine.errors import Fenced, UsageError
from syncengine.state import SQLiteStateStore
from syncengine.targets.postgres import epochs
from tests.e2e.harness import execute, rows

TABLE = "CREATE TABLE items (id bigint PRIMARY KEY, body text)"


def pipeline_config(src: str, tgt: str, extra: str = ""):
    text = textwrap.dedent(
        f"""
        pipelines:
          big:
            source: {{type: postgres, dsn: "{src}", tables: [public.items],
                      snapshot_chunk_rows: 100}}
            target: {{type: postgres, dsn: "{tgt}"}}
        """
    ) + textwrap.indent(textwrap.dedent(extra), "    ")
    return parse_config(text, env={}).pipelines["big"]


async def _open(config, tmp_path, name: str) -> ChunkCopier:
    return await ChunkCopier.open("big", config, SQLiteStateStore(tmp_path / f"{name}.db"))


def test_second_attempt_of_a_committed_chunk_writes_nothing(tmp_path, pg_dsn, pg_target_dsn):
    execute(
        pg_dsn,
        TABLE,
        "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 1000) g",
    )
    config = pipeline_config(pg_dsn, pg_target_dsn)

    async def scenario() -> None:
        first = await _open(config, tmp_path, "one")
        second = await _open(config, tmp_path, "two")  # another worker
        try:
            tasks = await first.plan()
            assert len(tasks) == 11 and tasks[3].lower == '["300"]'
            done = await first.copy(tasks[3])
            assert (done.rows, done.skipped) == (100, False)
            marked = rows(pg_target_dsn, "SELECT updated_at FROM _syncengine.chunks")
            again = await second.copy(tasks[3])  # the retry, on the other worker
            assert (again.rows, again.skipped) == (100, True)
            assert rows(pg_target_dsn, "SELECT updated_at FROM _syncengine.chunks") == marked
            # a workflow started again (after a failure) plans the same bounds: still skipped
            replanned = await second.plan()
            assert replanned == tasks
            assert (await second.copy(replanned[3])).skipped
            # the rest, split between the two
            for index, task in enumerate(tasks):
                if index != 3:
                    await (first if index % 2 else second).copy(task)
        finally:
            await first.close()
            await second.close()

    asyncio.run(scenario())
    query = "SELECT id, body FROM items ORDER BY id"
    assert rows(pg_target_dsn, query) == rows(pg_dsn, query)
    counts = rows(
        pg_target_dsn,
        "SELECT count(*), count(DISTINCT chunk), sum(row_count) FROM _syncengine.chunks",
    )
    assert counts == [(11, 11, 1000)]


def test_a_chunk_whose_attempt_rolled_back_is_copied_by_the_next(tmp_path, pg_dsn, pg_target_dsn):
    """An attempt that died before its commit (here: the target refused a row in another
    transaction's way, then that transaction went away) leaves no mark and no rows."""
    execute(pg_dsn, TABLE, "INSERT INTO items SELECT g, 'x' FROM generate_series(1, 300) g")
    execute(pg_target_dsn, TABLE, "INSERT INTO items VALUES (150, 'in the way')")
    config = pipeline_config(pg_dsn, pg_target_dsn)

    async def scenario() -> None:
        copier = await _open(config, tmp_path, "one")
        try:
            tasks = await copier.plan()
            with pytest.raises(Exception, match="refused chunk 1"):
                await copier.copy(tasks[1])  # rows 101..200: 150 is taken
            assert rows(pg_target_dsn, "SELECT count(*) FROM items") == [(1,)]
            assert rows(pg_target_dsn, "SELECT count(*) FROM _syncengine.chunks") == [(0,)]
            execute(pg_target_dsn, "DELETE FROM items")
            done = await copier.copy(tasks[1])
            assert (done.rows, done.skipped) == (100, False)
        finally:
            await copier.close()

    asyncio.run(scenario())
    assert rows(pg_target_dsn, "SELECT min(id), max(id), count(*) FROM items") == [(101, 200, 100)]


def test_a_chunk_attempt_overtaken_by_a_later_claim_commits_nothing(
    tmp_path, pg_dsn, pg_target_dsn
):
    """A paused attempt (held here on a row lock inside its COPY, certain rather than timed)
    whose chunk a later attempt claimed meanwhile: its commit, rows and done-mark, is refused
    by the chunk's fencing epoch; the later attempt then copies the chunk once."""
    execute(pg_dsn, TABLE, "INSERT INTO items SELECT g, 'x' FROM generate_series(1, 300) g")
    execute(pg_target_dsn, TABLE)
    config = pipeline_config(pg_dsn, pg_target_dsn)

    async def scenario() -> None:
        first = await _open(config, tmp_path, "one")
        second = await _open(config, tmp_path, "two")
        holder = await psycopg.AsyncConnection.connect(pg_target_dsn)
        try:
            tasks = await first.plan()
            await holder.execute("INSERT INTO items VALUES (150, 'held')")  # not committed
            stale = asyncio.ensure_future(first.copy(tasks[1], "worker-a"))  # rows 101..200
            while not rows(
                pg_target_dsn,
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'",
            ):
                await asyncio.sleep(0.05)
            fence = epochs.chunk_fence_name("big", "public.items", 1)
            async with await psycopg.AsyncConnection.connect(pg_target_dsn, autocommit=True) as c:
                assert await epochs.claim(c, fence, "worker-b") == 2
            await holder.rollback()
            with pytest.raises(Fenced, match="chunk:public.items:1: commit refused"):
                await asyncio.wait_for(stale, 60)
            assert rows(pg_target_dsn, "SELECT count(*) FROM items") == [(0,)]
            assert rows(pg_target_dsn, "SELECT count(*) FROM _syncengine.chunks") == [(0,)]
            done = await second.copy(tasks[1], "worker-c")
            assert (done.rows, done.skipped) == (100, False)
        finally:
            await holder.close()
            await first.close()
            await second.close()

    asyncio.run(scenario())
    assert rows(pg_target_dsn, "SELECT min(id), max(id), count(*) FROM items") == [(101, 200, 100)]
    assert rows(pg_target_dsn, "SELECT epoch, holder FROM _syncengine.epochs") == [(3, "worker-c")]


@pytest.mark.parametrize(
    ("table", "mappings", "reason"),
    [
        (
            TABLE,
            """
            mappings:
              - source: public.items
                fields: {id: id, body: upper(body)}
            """,
            "its mapping computes fields",
        ),
        ("CREATE TABLE items (id bigint, body text)", "", "it has no key"),
    ],
    ids=["computed-fields", "keyless"],
)
def test_a_table_that_cannot_pass_through_is_refused_with_the_reason(
    tmp_path, pg_dsn, pg_target_dsn, table, mappings, reason
):
    execute(pg_dsn, table)
    config = pipeline_config(pg_dsn, pg_target_dsn, mappings)
    with pytest.raises(
        UsageError,
        match=f"copies only tables that pass through as binary COPY, not public.items: {reason}",
    ):
        asyncio.run(_open(config, tmp_path, "one"))
