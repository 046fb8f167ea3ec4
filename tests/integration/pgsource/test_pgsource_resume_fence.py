"""Resumed snapshots and the target's position fence: a replay never moves a row back (F15).

A resumed snapshot reads its remaining chunks later than the snapshot position the stream
restarts from. Their rows carry a settled visibility horizon instead (every transaction that
committed below it is visible in them), so the fence drops the replay of those older changes.
The model below applies batches like the targets do (``conflicts/detect.py``): per key the
position of the last applied change, tombstones for deletes, and a non-snapshot change at or
before that position dropped as stale.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from syncengine.changes import ChangeBatch, lsn_to_pos
from syncengine.sources.postgres import admin, snapshot, watermarks
from syncengine.state import SQLiteStateStore
from tests.integration.pgsource.pgsource_helpers import drain, execute, make_source, table_state
from tests.integration.pgsource.test_pgsource_snapshot import SETUP, _writer
from tests.servers import PostgresServer


class FencedModel:
    """A target with the position fence (rows keyed by ``id``, unsent columns kept as they
    were); records every write that moved ``v`` back."""

    def __init__(self) -> None:
        self.rows: dict[int, dict] = {}
        self.positions: dict[int, str] = {}
        self.stale = 0
        self.regressions: list[tuple[int, str, int, int]] = []

    def apply(self, batch: ChangeBatch) -> None:
        unsent = {c: batch.unsent_mask(c) for c in batch.unsent_columns}
        for i, row in enumerate(batch.data.to_pylist()):
            op, pos = row["_op"], row["_pos"]
            key = row.get("_before.id") or row["id"]
            if op != "r" and key in self.positions and pos <= self.positions[key]:
                self.stale += 1
                continue
            old = self.rows.get(key)
            if op == "d":
                self.rows.pop(key, None)
            else:
                sent = {
                    c: row[c]
                    for c in batch.data_columns
                    if not (c in unsent and unsent[c][i].as_py())
                }
                if old is not None and sent["v"] < old["v"]:
                    self.regressions.append((key, op, old["v"], sent["v"]))
                self.rows[key] = {**(old or {}), **sent}
            self.positions[key] = pos

    def values(self, column: str = "v") -> dict[int, object]:
        return {k: row[column] for k, row in self.rows.items()}


async def _snapshot(source, model: FencedModel, stop_after: int | None = None) -> list:
    batches = []
    stream = source.snapshot(parallel=2)
    async for batch in stream:
        model.apply(batch)
        batches.append(batch)
        if stop_after is not None and len(batches) >= stop_after:
            break
    await stream.aclose()
    return batches


def test_key_changed_inside_the_window_keeps_its_toasted_value(pg_dsn, tmp_path, monkeypatch):
    """pgoutput does not resend an unchanged TOASTed value: a chunk row dropped because its key
    changed inside the window (the DBLog rule) came back through the replay without it."""
    big = "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 40000) g)"
    execute(
        pg_dsn,
        "CREATE TABLE items (id int PRIMARY KEY, v int NOT NULL, big text)",
        "INSERT INTO items SELECT g, 0, NULL FROM generate_series(1, 2000) g",
        f"UPDATE items SET big = {big} WHERE id = 1500",
    )
    reads = snapshot.read_copy

    async def read_then_update(conn, query):  # a change inside the window, after the read
        data = await reads(conn, query)
        if b"1500," in data:
            execute(pg_dsn, "UPDATE items SET v = v + 1 WHERE id = 1500")
        return data

    async def scenario():
        state = SQLiteStateStore(tmp_path / "state.db")
        model = FencedModel()
        first = make_source(pg_dsn, ["items"], state, max_rows=500, snapshot_chunk_rows=500)
        await first.open()
        await _snapshot(first, model, stop_after=2)  # chunk 2 (1001..1500) never emitted
        await first.close()
        monkeypatch.setattr(snapshot, "read_copy", read_then_update)
        second = make_source(pg_dsn, ["items"], state, max_rows=500, snapshot_chunk_rows=500)
        await second.open()
        await _snapshot(second, model)
        batches, _ = await drain(second, await second.snapshot_position())
        for batch in batches:
            model.apply(batch)
        await second.close()
        return model

    model = asyncio.run(scenario())
    source = table_state(pg_dsn, "items", "id")[(1500,)]
    assert model.rows[1500]["v"] == source["v"] == 1
    assert len(model.rows[1500].get("big") or "") == len(source["big"]) == 1_280_000


def test_resumed_snapshot_then_replay_moves_no_row_back_and_loses_nothing(pg_dsn, tmp_path):
    async def scenario():
        execute(pg_dsn, *SETUP)
        state = SQLiteStateStore(tmp_path / "state.db")
        model = FencedModel()
        first = make_source(pg_dsn, ["items"], state, max_rows=500, snapshot_chunk_rows=500)
        await first.open()
        killed = await _snapshot(first, model, stop_after=3)  # two chunks run at once
        await first.close()
        position = await first.snapshot_position()
        # Changed twice while nobody reads: the resumed chunks see both, the replay the first
        # one first, which a row carrying the snapshot position would take back.
        for _ in range(2):
            execute(pg_dsn, "UPDATE items SET v = v + 1 WHERE id % 3 = 0")
        execute(pg_dsn, "DELETE FROM items WHERE id % 11 = 0")
        second = make_source(pg_dsn, ["items"], state, max_rows=500, snapshot_chunk_rows=500)
        await second.open()
        stop = asyncio.Event()
        writer = asyncio.create_task(_writer(pg_dsn, stop, 3))  # v only grows
        resumed = await _snapshot(second, model)
        await asyncio.sleep(0.2)
        stop.set()
        writes = await writer
        assert await second.snapshot_position() == position
        batches, _ = await drain(second, position)
        for batch in batches:
            model.apply(batch)
        await second.close()
        return killed, position, resumed, writes, model

    killed, position, resumed, writes, model = asyncio.run(scenario())
    assert writes > 50
    # a chunk is done once the batch after it is asked for: the last one taken never was; which
    # chunks those are depends on which of the two readers finished first
    done = {b.meta["chunk"] for b in killed[:-1] if "chunk" in b.meta}
    assert len(done) == 2
    assert {b.meta["chunk"] for b in resumed if "chunk" in b.meta} == set(range(7)) - done
    # every resumed chunk is positioned after the snapshot, so the fence had work to do
    assert all(p > position for b in resumed for p in b.data.column("_pos").to_pylist())
    assert model.stale >= 300  # replays of the updates the resumed rows already contain
    assert model.regressions == []
    expected = {k: row["v"] for (k,), row in table_state(pg_dsn, "items", "id").items()}
    assert model.values() == expected  # nothing lost


# -- a commit that is in the WAL but not yet visible --------------------------------------


@pytest.fixture(scope="module")
def lingering_pg() -> Iterator[PostgresServer]:
    """A server where a session that asks for ``synchronous_commit = on`` waits forever after
    writing its commit record (no standby ever confirms); every other session commits locally."""
    if os.environ.get("SYNCENGINE_TEST_PG_DSN"):
        pytest.skip("needs its own server (synchronous_standby_names)")
    settings = {"synchronous_standby_names": "'f15_nobody'", "synchronous_commit": "local"}
    server = PostgresServer(settings=settings).start()
    try:
        yield server
    finally:
        server.destroy()


class Lingering(threading.Thread):
    """Commits ``statement`` in a session whose commit then waits for a standby."""

    def __init__(self, dsn: str, statement: str) -> None:
        super().__init__(daemon=True)
        self.dsn, self.statement = dsn, statement
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.dsn) as conn:
                conn.execute("SET synchronous_commit = on")
                conn.execute(self.statement)
                conn.commit()  # returns once pg_cancel_backend() ends the wait
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def waiting_pid(self, timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
                ).fetchone()
                if row:
                    return int(row[0])
                time.sleep(0.02)
        raise AssertionError("the commit never started waiting for the standby")


def test_commit_in_the_wal_but_invisible_is_not_fenced(lingering_pg, tmp_path, monkeypatch, caplog):
    """A transaction whose commit record precedes the low watermark but which no snapshot sees
    yet (here: waiting for a synchronous standby) must not end up below the rows' position:
    the fence would drop its change, which the rows do not contain."""
    dsn = lingering_pg.dsn()
    monkeypatch.setattr(watermarks, "SETTLE_SECONDS", 0.5)
    caplog.set_level(logging.WARNING, "syncengine.sources.postgres")
    execute(dsn, "DROP TABLE IF EXISTS items", *SETUP)
    lingering = Lingering(dsn, "UPDATE items SET v = 10000 WHERE id = 2901")

    async def scenario():
        state = SQLiteStateStore(tmp_path / "state.db")
        model = FencedModel()
        first = make_source(dsn, ["items"], state, max_rows=500, snapshot_chunk_rows=500)
        await first.open()
        await _snapshot(first, model, stop_after=3)
        await first.close()
        position = await first.snapshot_position()
        lingering.start()
        pid = await asyncio.to_thread(lingering.waiting_pid)
        execute(dsn, "UPDATE items SET v = v + 1 WHERE id % 5 = 0")  # visible, after it
        conn = await first.connect()
        naive = lsn_to_pos(await admin.current_lsn(conn))  # what an unsettled fence would use
        second = make_source(dsn, ["items"], state, max_rows=500, snapshot_chunk_rows=500)
        await second.open()
        resumed = await _snapshot(second, model)
        invisible = [
            r for b in resumed for r in b.data.to_pylist() if r["id"] == 2901 and r["v"] != 2901
        ]
        await conn.execute("SELECT pg_cancel_backend(%s)", (pid,))
        await asyncio.to_thread(lingering.join, 10)
        horizon = watermarks.VisibilityHorizon(position)
        settled, exact = await horizon.settle(conn)  # nothing lingers any more
        assert exact
        await conn.close()
        batches, _ = await drain(second, position)
        for batch in batches:
            model.apply(batch)
        await second.close()
        change = [r["_pos"] for b in batches for r in b.data.to_pylist() if r.get("id") == 2901]
        return position, naive, resumed, invisible, settled, change, model

    position, naive, resumed, invisible, settled, change, model = asyncio.run(scenario())
    assert lingering.error is None
    assert invisible == []  # the chunk read did not see the committed update...
    assert change and change[0] < naive  # ...which an unsettled position would have fenced
    assert model.rows[2901]["v"] == 10000  # the change arrived through the replay
    expected = {k: row["v"] for (k,), row in table_state(dsn, "items", "id").items()}
    assert model.values() == expected
    # rows read while it lingered carry the exported snapshot's exact position
    assert {p for b in resumed for p in b.data.column("_pos").to_pylist()} == {position}
    assert "still running after" in caplog.text
    assert settled > naive


def test_horizon_waits_for_a_commit_newer_than_every_completed_transaction(lingering_pg):
    """The lingering transaction holds the newest xid, above every completed one, so a plain
    snapshot does not even list it as running (its xid is at or above ``xmax``)."""
    dsn = lingering_pg.dsn()
    execute(dsn, "DROP TABLE IF EXISTS pinned", "CREATE TABLE pinned (id int PRIMARY KEY)")
    floor = lsn_to_pos(0)

    async def scenario():
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        lingering = Lingering(dsn, "INSERT INTO pinned VALUES (1)")
        lingering.start()
        pid = await asyncio.to_thread(lingering.waiting_pid)
        listed = await (
            await conn.execute("SELECT pg_snapshot_xip(pg_current_snapshot())")
        ).fetchall()
        horizon = watermarks.VisibilityHorizon(floor, settle_seconds=0.3)
        during = await horizon.settle(conn)
        await conn.execute("SELECT pg_cancel_backend(%s)", (pid,))
        await asyncio.to_thread(lingering.join, 10)
        after = await horizon.settle(conn)
        seen = await (await conn.execute("SELECT count(*) FROM pinned")).fetchone()
        await conn.close()
        return listed, during, after, seen, lingering.error

    listed, during, after, seen, error = asyncio.run(scenario())
    assert error is None
    assert listed == []  # invisible, yet not in the snapshot's list of running xids
    assert during == (floor, False)  # not settled while it lingers
    assert after[1] and after[0] > floor and seen == (1,)
