"""Snapshots killed after a table's last chunk committed: its deletes still come (ghost rows).

A reconciled snapshot sends, after each group of chunks, the deletes made while the group was
read (their keys are absent from the rows, and the replay's older changes of those keys would
insert them: ghost rows, F15). A process killed after the group's rows committed but before
those deletes did leaves chunks marked done that the next start no longer reads; one killed
after its last chunk, before the backfill's checkpoint, leaves every chunk done (F25).
"""

from __future__ import annotations

import asyncio

from syncengine.sources.postgres import watermarks
from syncengine.state import SQLiteStateStore
from tests.integration.pgsource.pgsource_helpers import drain, execute, make_source, table_state
from tests.integration.pgsource.test_pgsource_resume_deletes import GhostModel

SETUP = (
    "CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, s text)",
    "INSERT INTO items SELECT g, g, 'row ' || g FROM generate_series(1, 1000) g",
    "CREATE TABLE notes (id int PRIMARY KEY, v int NOT NULL)",
    "INSERT INTO notes SELECT g, g FROM generate_series(1, 100) g",
)
#: updated then deleted inside the first window, before its chunks are read
GONE = "id BETWEEN 600 AND 700 AND id % 5 = 0"


async def restart(source, model: GhostModel) -> str:
    """The next process: the snapshot's rest, then the stream from its position, every batch
    of ``items`` applied to ``model``; returns that position."""
    await source.open()
    async for batch in source.snapshot(parallel=3):
        if batch.table == "public.items":
            model.apply(batch)
    start = await source.snapshot_position()
    batches, _ = await drain(source, start)
    for batch in batches:
        if batch.table == "public.items":
            model.apply(batch)
    await source.close()
    return start


def test_deletes_of_a_table_finished_before_the_kill_are_sent(pg_dsn, tmp_path, monkeypatch):
    """``items``'s two chunks are read in the first group; the kill comes after they committed
    and before the deletes of that window did; ``notes`` is left, so the next start resumes."""
    execute(pg_dsn, *SETUP)
    settle = watermarks.VisibilityHorizon.settle
    deleted: list[bool] = []

    async def delete_then_settle(self, conn):  # the first window: gone before any read
        if not deleted:
            deleted.append(True)
            execute(pg_dsn, f"UPDATE items SET v = v + 1000 WHERE {GONE}")
            execute(pg_dsn, f"DELETE FROM items WHERE {GONE}")
        return await settle(self, conn)

    async def scenario():
        state = SQLiteStateStore(tmp_path / "state.db")
        model = GhostModel()
        first = make_source(
            pg_dsn, ["items", "notes"], state, max_rows=500, snapshot_chunk_rows=500
        )
        await first.open()
        await first._create_slot_without_snapshot()  # an existing slot: reconciled chunks
        monkeypatch.setattr(watermarks.VisibilityHorizon, "settle", delete_then_settle)
        stream = first.snapshot(parallel=3)  # items: chunks 0-2 (the last one empty)
        chunks = set()
        async for batch in stream:
            if batch.meta.get("deletes") and len(chunks) == 3:
                break  # killed before they committed
            if batch.table == "public.items":
                model.apply(batch)
                chunks.add(batch.meta.get("chunk"))
        await stream.aclose()
        await first.close()
        second = make_source(
            pg_dsn, ["items", "notes"], state, max_rows=500, snapshot_chunk_rows=500
        )
        await restart(second, model)
        return chunks, model

    chunks, model = asyncio.run(scenario())
    assert deleted and chunks == {0, 1, 2}
    assert model.created == []  # the replay's updates of the deleted keys were fenced
    source = table_state(pg_dsn, "items", "id")
    assert model.values() == {k: row["v"] for (k,), row in source.items()}


def test_snapshot_killed_after_its_last_chunk_resumes_instead_of_starting_over(pg_dsn, tmp_path):
    """Every chunk committed, the backfill's checkpoint not: the next start must not take a
    fresh snapshot (it would stream from now, and keys deleted since the chunks were read would
    stay in the target for good)."""
    execute(pg_dsn, *SETUP[:2])

    async def scenario():
        state = SQLiteStateStore(tmp_path / "state.db")
        model = GhostModel()
        first = make_source(pg_dsn, ["items"], state, max_rows=500, snapshot_chunk_rows=500)
        await first.open()
        async for batch in first.snapshot(parallel=2):
            model.apply(batch)
        await first.close()
        position = await first.snapshot_position()
        execute(pg_dsn, f"UPDATE items SET v = v + 1000 WHERE {GONE}")
        execute(pg_dsn, f"DELETE FROM items WHERE {GONE}")
        second = make_source(pg_dsn, ["items"], state, max_rows=500, snapshot_chunk_rows=500)
        start = await restart(second, model)
        return position, start, model

    position, start, model = asyncio.run(scenario())
    source = table_state(pg_dsn, "items", "id")
    assert model.values() == {k: row["v"] for (k,), row in source.items()}
    assert start == position  # resumed: the stream replays from the first snapshot's position
    assert model.created == []
