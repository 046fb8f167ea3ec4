"""Slot/publication admin: checks that say what to change, lag, heartbeat, explicit drop."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from syncengine.config.models import PipelineConfig
from syncengine.errors import FatalError, PermissionProblem
from syncengine.sources.postgres import admin
from syncengine.sources.postgres.pgerrors import map_error
from syncengine.sources.postgres.preflight import check_source
from tests.integration.pgsource.pgsource_helpers import drain, execute, make_source


def test_validate_reports_unkeyed_table_and_missing_table(pg_dsn):
    execute(pg_dsn, "CREATE TABLE loose (a int)", "CREATE TABLE tight (id int PRIMARY KEY)")
    pipeline = PipelineConfig.model_validate(
        {
            "source": {"type": "postgres", "dsn": pg_dsn, "tables": ["loose", "tight", "nope"]},
            "target": {"type": "parquet", "path": "/tmp/x"},
        }
    )
    problems = asyncio.run(check_source("p", pipeline))
    assert any("'loose' has no primary key" in p and "REPLICA IDENTITY FULL" in p for p in problems)
    assert any("'nope' does not exist" in p for p in problems)
    assert not any("tight" in p for p in problems)


def test_replica_identity_nothing_is_refused_before_it_is_published(pg_dsn):
    """Once in a publication that publishes updates, a table with REPLICA IDENTITY NOTHING
    has every UPDATE and DELETE refused by the source: the engine's ``open`` broke the
    application writing it ("cannot update table … does not have a replica identity")."""
    execute(
        pg_dsn,
        "CREATE TABLE keyed (id int PRIMARY KEY)",
        "ALTER TABLE keyed REPLICA IDENTITY NOTHING",
        "CREATE TABLE loose (a int)",
        "ALTER TABLE loose REPLICA IDENTITY NOTHING",
    )
    pipeline = PipelineConfig.model_validate(
        {
            "source": {"type": "postgres", "dsn": pg_dsn, "tables": ["keyed", "loose"]},
            "target": {"type": "parquet", "path": "/tmp/x"},
        }
    )
    problems = asyncio.run(check_source("p", pipeline))
    assert any(
        "'keyed' has REPLICA IDENTITY NOTHING" in p and "IDENTITY DEFAULT" in p for p in problems
    )
    assert any(
        "'loose' has REPLICA IDENTITY NOTHING" in p and "IDENTITY FULL" in p for p in problems
    )

    async def refused() -> None:
        source = make_source(pg_dsn, ["keyed"], pipeline="nothing")
        try:
            with pytest.raises(FatalError, match="REPLICA IDENTITY NOTHING"):
                await source.open()
        finally:
            await source.close()

    asyncio.run(refused())
    execute(pg_dsn, "UPDATE keyed SET id = id + 1")  # the application still writes


def test_open_creates_publication_for_partitioned_table_and_refuses_unkeyed(pg_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE m (id int, day date, PRIMARY KEY (id, day)) PARTITION BY RANGE (day)",
        "CREATE TABLE m_2024 PARTITION OF m FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
        "CREATE TABLE loose (a int)",
    )

    async def scenario():
        source = make_source(pg_dsn, ["m"], pipeline="part")
        await source.open()
        _, start = await drain(source, None)
        execute(pg_dsn, "INSERT INTO m VALUES (1, '2024-05-05')")
        batches, _ = await drain(source, start)
        await source.close()
        bad = make_source(pg_dsn, ["loose"], pipeline="bad")
        with pytest.raises(FatalError, match="REPLICA IDENTITY FULL"):
            await bad.open()
        await bad.close()
        return batches

    batches = [b for b in asyncio.run(scenario()) if b.num_rows]
    assert [b.table for b in batches] == ["public.m"]  # published via the partition root
    with psycopg.connect(pg_dsn) as conn:
        root = conn.execute(
            "SELECT pubviaroot FROM pg_publication WHERE pubname = 'syncengine_part'"
        ).fetchone()
    assert root == (True,)


def test_lag_heartbeat_and_explicit_drop(pg_dsn):
    execute(pg_dsn, "CREATE TABLE h (id int PRIMARY KEY)")

    async def scenario():
        source = make_source(pg_dsn, ["h"], pipeline="hb", max_retained_wal_mb=1)
        await source.open()
        await drain(source, None)  # creates the slot
        start = await source.current_position()
        execute(pg_dsn, "INSERT INTO h SELECT generate_series(1, 20000)")
        lag = await source.lag(start)
        # an idle database: heartbeats give the stream a boundary to acknowledge
        conn = await source.connect()
        await admin.emit_heartbeat(conn)
        await conn.close()
        batches, last = await drain(source, start)
        after = await source.lag(last)
        await source.close()
        dropped = await admin.drop_slot(pg_dsn, "syncengine_hb")
        again = await admin.drop_slot(pg_dsn, "syncengine_hb")
        return lag, after, last, start, dropped, again

    lag, after, last, start, dropped, again = asyncio.run(scenario())
    assert lag.lag_bytes and lag.lag_bytes > 1024 * 1024
    assert lag.retained_wal_bytes
    # the stream is closed between drains: the warning says nothing reads the slot
    assert str(lag.details["warning"]).endswith("nothing is reading it: is the pipeline running?")
    assert last > start and after.lag_bytes is not None and after.lag_bytes < lag.lag_bytes
    assert after.lag_seconds == 0.0  # everything read was acknowledged
    assert dropped is True and again is False


def test_errors_map_to_retry_policy():
    assert map_error(psycopg.errors.InsufficientPrivilege("no"), "x").__class__ is PermissionProblem
    assert map_error(psycopg.errors.AdminShutdown("bye"), "x").retriable
    assert not map_error(psycopg.errors.UndefinedTable("t"), "x").retriable
    leaked = map_error(psycopg.OperationalError("postgresql://u:hunter2@h/db failed"), "x")
    assert "hunter2" not in str(leaked) and leaked.retriable


def test_heartbeat_advances_idle_slot_and_cancel_stops_promptly(pg_dsn):
    execute(pg_dsn, "CREATE TABLE idle (id int PRIMARY KEY)")

    async def scenario():
        source = make_source(pg_dsn, ["idle"], pipeline="idle", heartbeat=0.3)
        await source.open()
        await drain(source, None)
        start = await source.current_position()
        resumes = []

        async def consume():
            async for batch in source.stream(start):
                if batch.meta.get("resume"):
                    resumes.append(batch.meta["resume"])
                    await source.acknowledge(batch.meta["resume"])

        task = asyncio.create_task(consume())
        loop = asyncio.get_running_loop()
        # heartbeats every 0.3 s once the stream runs; its start (the decode process) is slow
        # on a loaded machine, so the wait is for two of them, not for a fixed time
        give_up = loop.time() + 30
        while len(resumes) < 2 and not task.done() and loop.time() < give_up:
            await asyncio.sleep(0.05)
        task.cancel()
        cancelled_at = loop.time()
        with pytest.raises(asyncio.CancelledError):
            await task
        stop_time = loop.time() - cancelled_at
        await asyncio.sleep(0.2)
        conn = await source.connect()
        row = await (
            await conn.execute(
                "SELECT active, confirmed_flush_lsn::text FROM pg_replication_slots "
                "WHERE slot_name = 'syncengine_idle'"
            )
        ).fetchone()
        await conn.close()
        await source.close()
        return start, resumes, stop_time, row

    start, resumes, stop_time, (active, confirmed) = asyncio.run(scenario())
    assert len(resumes) >= 2 and resumes[-1] > start
    assert stop_time < 1.0 and active is False
    high, low = confirmed.split("/")
    assert f"{int(high, 16):08X}{int(low, 16):08X}" == resumes[-1]


def test_missing_slot_with_a_checkpoint_is_history_lost(pg_dsn):
    from syncengine.errors import HistoryLost

    execute(pg_dsn, "CREATE TABLE gone (id int PRIMARY KEY)")

    async def scenario():
        source = make_source(pg_dsn, ["gone"], pipeline="gone")
        await source.open()
        await drain(source, None)
        start = await source.current_position()
        assert await admin.drop_slot(pg_dsn, "syncengine_gone")
        with pytest.raises(HistoryLost, match="slot syncengine_gone is gone"):
            async for _ in source.stream(start):
                pass
        await source.close()

    asyncio.run(scenario())


def test_acknowledge_after_the_stream_ended_confirms_the_slot_once_at_close(pg_dsn):
    """Acknowledgements of groups applied after the stream ended (``sync --once``'s last
    groups) move the slot when the source closes: one ``pg_replication_slot_advance``, which
    decodes the slot's WAL again on the server, instead of one per group."""
    execute(pg_dsn, "CREATE TABLE once (id int PRIMARY KEY)")

    async def scenario():
        source = make_source(pg_dsn, ["once"], pipeline="once")
        await source.open()
        await drain(source, None)
        start = await source.current_position()
        execute(pg_dsn, "INSERT INTO once VALUES (1)", "INSERT INTO once VALUES (2)")
        until = await source.current_position()
        resumes = [
            b.meta["resume"] async for b in source.stream(start, until) if "resume" in b.meta
        ]
        for resume in resumes:  # like the runner: one per group, after the reader finished
            await source.acknowledge(resume)
        before = await slot_confirmed(source)
        await source.close()
        after = await slot_confirmed(source)
        return resumes, before, after

    resumes, before, after = asyncio.run(scenario())
    # confirmed when the source closes, at the last acknowledgement, not before
    assert before is not None and pg_position(before) < resumes[-1]
    assert pg_position(after) == resumes[-1]


async def slot_confirmed(source):
    conn = await source.connect()
    try:
        row = await (
            await conn.execute(
                "SELECT confirmed_flush_lsn::text FROM pg_replication_slots "
                "WHERE slot_name = 'syncengine_once'"
            )
        ).fetchone()
    finally:
        await conn.close()
    return row[0]


def pg_position(lsn: str) -> str:
    high, low = lsn.split("/")
    return f"{int(high, 16):08X}{int(low, 16):08X}"


def test_table_keys_follow_the_replica_identity(pg_dsn):
    """USING INDEX: that index's columns (the old key pgoutput sends), even beside a primary
    key; FULL without a primary key: keyless (); a primary key otherwise."""
    execute(
        pg_dsn,
        "CREATE TABLE both_keys (id int PRIMARY KEY, code text NOT NULL, v int)",
        "CREATE UNIQUE INDEX both_code ON both_keys (code)",
        "ALTER TABLE both_keys REPLICA IDENTITY USING INDEX both_code",
        "CREATE TABLE full_pk (id int PRIMARY KEY, v int)",
        "ALTER TABLE full_pk REPLICA IDENTITY FULL",
        "CREATE TABLE eventlog (kind text, note text, n int)",
        "ALTER TABLE eventlog REPLICA IDENTITY FULL",
    )

    async def keys():
        async with await psycopg.AsyncConnection.connect(pg_dsn) as conn:
            return await admin.table_keys(conn, ["both_keys", "full_pk", "eventlog"])

    assert asyncio.run(keys()) == {
        "public.both_keys": ("code",),
        "public.full_pk": ("id",),
        "public.eventlog": (),
    }


def test_validate_refuses_a_strategy_a_keyless_table_cannot_have(pg_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE eventlog (kind text, note text, n int)",
        "ALTER TABLE eventlog REPLICA IDENTITY FULL",
    )

    def pipeline(conflicts: dict, mappings: list) -> PipelineConfig:
        return PipelineConfig.model_validate(
            {
                "source": {"type": "postgres", "dsn": pg_dsn, "tables": ["eventlog"]},
                "target": {"type": "postgres", "dsn": pg_dsn},
                "conflicts": conflicts,
                "mappings": mappings,
            }
        )

    merge = asyncio.run(check_source("p", pipeline({"strategy": "merge"}, [])))
    assert len(merge) == 1 and merge[0].startswith("conflicts: 'eventlog' has no key")
    mapped = [{"source": "public.eventlog", "conflicts": {"strategy": "manual"}}]
    manual = asyncio.run(check_source("p", pipeline({}, mapped)))
    assert len(manual) == 1 and manual[0].startswith("mappings[0]:")
    assert asyncio.run(check_source("p", pipeline({"strategy": "remote"}, []))) == []
