"""The decode process (sources/postgres/decodeproc.py) against a real slot: it dying surfaces
as a retriable error, the server hears only acknowledged positions, the child's errors and
log lines reach the parent as they would in-process."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import psycopg
import pytest

from syncengine.errors import SourceUnavailable, SyncEngineError
from syncengine.sources.base import resume_position
from syncengine.sources.postgres import decodespawn
from syncengine.sources.postgres.decodeproc import DecodeProcess
from syncengine.sources.postgres.decodespawn import ENV
from syncengine.sources.postgres.source import position_lsn
from tests.integration.pgsource.pgsource_helpers import drain, execute, first_rows, make_source


def confirmed_flush(dsn: str, slot: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT confirmed_flush_lsn - '0/0' FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        ).fetchone()
    assert row is not None
    return int(row[0])


async def started(pg_dsn: str, table: str):
    """A source whose slot exists and is drained, its start position and a live stream with
    one table's rows (the first batch already taken)."""
    execute(pg_dsn, f"CREATE TABLE {table} (id int PRIMARY KEY, t time)")
    source = make_source(pg_dsn, [table])
    await source.open()
    _, start = await drain(source, None)
    execute(pg_dsn, f"INSERT INTO {table} VALUES (0, '09:00')")
    _, start = await drain(source, start)
    await source.close()  # as sync --once ends: the acknowledged start is the slot's position
    assert start is not None
    return source, start


@pytest.fixture(autouse=True)
def decode_process(monkeypatch):
    monkeypatch.setenv(ENV, "process")


def test_a_killed_decode_process_is_a_retriable_source_error(pg_dsn):
    async def scenario():
        source, start = await started(pg_dsn, "killed")
        execute(pg_dsn, "INSERT INTO killed SELECT i, '10:00' FROM generate_series(1, 10) i")
        stream = source.stream(start)  # no end: only the kill ends it
        await first_rows(stream)
        child = source._live
        assert isinstance(child, DecodeProcess) and child.proc is not None
        os.kill(child.pid, signal.SIGKILL)
        with pytest.raises(SourceUnavailable, match="killed by SIGKILL") as raised:
            async for _ in stream:
                pass
        await source.close()
        return raised.value, child

    error, child = asyncio.run(scenario())
    assert error.retriable
    assert child.proc.poll() == -signal.SIGKILL


def test_the_server_hears_only_acknowledged_positions(pg_dsn):
    async def scenario():
        source, start = await started(pg_dsn, "acks")
        before = confirmed_flush(pg_dsn, source.slot)
        assert before == position_lsn(start)
        execute(pg_dsn, "INSERT INTO acks SELECT i, '10:00' FROM generate_series(1, 50) i")
        stream = source.stream(start)
        resume = None
        async for batch in stream:
            resume = resume_position(batch)
            if resume:
                break
        assert resume is not None
        # read, decoded and handed over, yet not committed at a target: not flushed
        child = source._live
        assert isinstance(child, DecodeProcess)
        child.acknowledge(0)  # a status update now; an older position moves nothing
        await asyncio.sleep(1.0)
        unacked = confirmed_flush(pg_dsn, source.slot)
        await source.acknowledge(resume)
        acked = None
        for _ in range(100):
            await asyncio.sleep(0.1)
            acked = confirmed_flush(pg_dsn, source.slot)
            if acked == position_lsn(resume):
                break
        await stream.aclose()
        await source.close()
        return before, unacked, acked, position_lsn(resume)

    before, unacked, acked, resume = asyncio.run(scenario())
    assert unacked == before < resume
    assert acked == resume


def test_a_drains_late_acknowledgements_reach_the_server_on_its_stream(pg_dsn):
    """A drain reads its end before the applier committed the last batches: their
    acknowledgements, made after that, still confirm the slot through the stream (which the
    child keeps open until the last position handed over is acknowledged), not through the
    ``pg_replication_slot_advance`` at ``close`` (the server decodes the slot's WAL again for
    that). The slot is checked before ``close``."""

    async def scenario():
        source, start = await started(pg_dsn, "lingers")
        execute(pg_dsn, "INSERT INTO lingers SELECT i, '10:00' FROM generate_series(1, 50) i")
        execute(pg_dsn, "UPDATE lingers SET t = '11:00' WHERE id <= 25")
        until = await source.current_position()
        handed: asyncio.Queue[str] = asyncio.Queue()

        async def applier() -> None:  # commits lag behind the stream, as the runtime's do
            while True:
                position = await handed.get()
                await asyncio.sleep(0.3)
                await source.acknowledge(position)

        acks = asyncio.create_task(applier())
        last = None
        async for batch in source.stream(start, until):
            resume = resume_position(batch)
            if resume:
                last = resume
                handed.put_nowait(resume)
        ended_acked = handed.empty() and source._acked == position_lsn(last)
        confirmed = None
        for _ in range(50):
            confirmed = confirmed_flush(pg_dsn, source.slot)
            if confirmed == position_lsn(last):
                break
            await asyncio.sleep(0.1)
        acks.cancel()
        await source.close()
        return ended_acked, confirmed, position_lsn(last)

    ended_acked, confirmed, last = asyncio.run(scenario())
    assert ended_acked  # the stream ended only once its last position was acknowledged
    assert confirmed == last


def test_errors_and_log_lines_are_the_same_in_both_modes(pg_dsn, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, "syncengine.sources.postgres")

    async def scenario(mode: str) -> tuple[list[object], type, str]:
        monkeypatch.setenv(ENV, mode)
        table = f"errs_{mode}"
        execute(pg_dsn, f"CREATE TABLE {table} (id int PRIMARY KEY, t time)")
        source = make_source(pg_dsn, [table], pipeline=mode)
        await source.open()
        _, start = await drain(source, None)
        # 24:00 has no Arrow time64 form: the batch carries the column as text, with a warning
        execute(pg_dsn, f"INSERT INTO {table} VALUES (1, '24:00:00')")
        batches, start = await drain(source, start)
        # a publication dropped under the slot: the walsender fails at the next change
        execute(
            pg_dsn,
            f"DROP PUBLICATION {source.publication}",
            f"INSERT INTO {table} VALUES (2, '10:00')",
        )
        with pytest.raises(SyncEngineError) as raised:
            await drain(source, start)
        await source.close()
        values = [v for b in batches if b.num_rows for v in b.data.column("t").to_pylist()]
        return values, type(raised.value), str(raised.value).replace(mode, "P")

    inline = asyncio.run(scenario("inline"))
    warned_inline = caplog.text.count("has no time64[us] form")
    process = asyncio.run(scenario("process"))
    assert process == inline
    assert inline[0] == ["24:00:00"]
    assert "publication" in inline[2]
    # the decode process logged its warning through this process's logging
    assert caplog.text.count("has no time64[us] form") == warned_inline + 1


def test_the_decode_process_answers_the_server_while_the_parent_is_busy(pg_dsn):
    def last_reply(slot: str):
        with psycopg.connect(pg_dsn) as conn:
            row = conn.execute(
                "SELECT r.reply_time FROM pg_stat_replication r "
                "JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.slot_name = %s",
                (slot,),
            ).fetchone()
        return row[0] if row else None

    async def scenario():
        source, start = await started(pg_dsn, "busy")
        execute(pg_dsn, "INSERT INTO busy SELECT i, '10:00' FROM generate_series(1, 10) i")
        stream = source.stream(start)
        await first_rows(stream)
        first = last_reply(source.slot)
        # the consumer takes nothing for longer than the status interval (10 s)
        await asyncio.sleep(14)
        later = last_reply(source.slot)
        await stream.aclose()
        await source.close()
        return first, later

    first, later = asyncio.run(scenario())
    assert first is not None and later is not None
    assert (later - first).total_seconds() >= 8


def test_a_restarted_stream_takes_the_spare_started_beside_the_first(pg_dsn, monkeypatch):
    """A reload or a retry restarts the stream: it takes the child started ahead of need
    (no interpreter start-up in its way) and leaves a new spare behind; the spare decodes
    like any child, and one started with another environment is not used."""
    monkeypatch.setattr(decodespawn, "SPARE_AFTER", 0.2)

    async def until_spare() -> decodespawn._Started:
        for _ in range(100):
            if decodespawn.SPARES.spare is not None:
                return decodespawn.SPARES.spare
            await asyncio.sleep(0.05)
        raise AssertionError("no spare was started")

    async def rows_of(source, start: str) -> tuple[list[int], int | None]:
        stream = source.stream(start)
        batch = await first_rows(stream)
        child = source._live
        assert isinstance(child, DecodeProcess)
        await stream.aclose()
        return batch.data.column("id").to_pylist(), child.pid

    async def scenario():
        source, start = await started(pg_dsn, "spare")
        execute(pg_dsn, "INSERT INTO spare SELECT i, '10:00' FROM generate_series(1, 5) i")
        first, first_pid = await rows_of(source, start)
        spare = await until_spare()
        assert spare.proc.pid != first_pid
        second, second_pid = await rows_of(source, start)  # the same changes, read again
        assert second_pid == spare.proc.pid
        replacement = await until_spare()  # the taken spare was replaced
        monkeypatch.setenv("SYNCENGINE_TEST_MARK", "other")
        third, third_pid = await rows_of(source, start)
        await source.close()
        return first, second, third, (spare, replacement, third_pid)

    first, second, third, (spare, replacement, third_pid) = asyncio.run(scenario())
    assert first == second == third == [1, 2, 3, 4, 5]
    assert third_pid not in (spare.proc.pid, replacement.proc.pid)
    assert replacement.proc.poll() is not None  # another environment: discarded, not left


def test_a_drain_takes_the_child_started_early_and_leaves_no_spare(pg_dsn, monkeypatch):
    """``sync`` starts its child before it builds the pipeline (start_early); the drain's
    stream takes that child, and a stream that ends by itself starts no spare beside it (its
    start-up would compete with the drain it cannot serve)."""
    monkeypatch.setattr(decodespawn, "SPARE_AFTER", 0.1)
    children: list[decodespawn._Started] = []
    start_child = decodespawn._start

    def counting() -> decodespawn._Started:
        children.append(start_child())
        return children[-1]

    async def scenario():
        source, start = await started(pg_dsn, "early")
        if decodespawn.SPARES.spare is not None:  # left by the drains above: not this test's
            decodespawn.SPARES.spare.discard()
            decodespawn.SPARES.spare = None
        monkeypatch.setattr(decodespawn, "_start", counting)
        execute(pg_dsn, "INSERT INTO early SELECT i, '10:00' FROM generate_series(1, 5) i")
        decodespawn.start_early()
        assert decodespawn.SPARES.spare is children[0]
        batches, _ = await drain(source, start)
        await asyncio.sleep(0.5)  # well past SPARE_AFTER: a daemon's stream would have one
        await source.close()
        return batches, decodespawn.SPARES.spare

    batches, spare = asyncio.run(scenario())
    assert sorted(i for b in batches for i in b.data.column("id").to_pylist()) == [1, 2, 3, 4, 5]
    assert len(children) == 1 and spare is None  # the drain used the early child, left none
    assert children[0].proc.poll() is not None  # and it stopped with the drain
