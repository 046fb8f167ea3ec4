"""The stream prepares a group while the one before it commits (runtime/inflight.py), on real
Postgres source and target: commits and acknowledgements keep their order, a group that needs
the target is prepared after the commit, and a commit that fails in flight stops the stream at
once, even when no further change arrives to wake it."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from syncengine.changes import DRAIN_END
from syncengine.config.models import PipelineConfig
from syncengine.errors import Interrupted
from syncengine.runtime import runner
from syncengine.runtime.pipeline import Pipeline, PrepareLater
from syncengine.sources.postgres.decodespawn import ENV
from syncengine.state import SQLiteStateStore
from tests.integration.pgsource.pgsource_helpers import execute


def make_pipeline(src: str, tgt: str, max_rows: int = 100) -> Pipeline:
    config = PipelineConfig.model_validate(
        {
            "source": {"type": "postgres", "dsn": src, "tables": ["items"], "heartbeat": 0},
            "target": {"type": "postgres", "dsn": tgt},
            "batch": {"max_rows": max_rows, "max_wait": "50ms"},
        }
    )
    return Pipeline("inflight", config, SQLiteStateStore(":memory:"))


def rows(dsn: str, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(query).fetchall()


class Recorder:
    """What the stream did, in order: prepares (ahead or not), commits, acknowledgements."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.events: list[tuple[str, object]] = []
        prepare, commit = pipeline.prepare, pipeline.commit
        acknowledge = pipeline.source.acknowledge

        async def prepared(batches, position, **options):
            ahead = options.get("ahead", False)
            try:
                result = await prepare(batches, position, **options)
            except PrepareLater as why:
                self.events.append(("later", str(why)))
                raise
            self.events.append(("ahead" if ahead else "prepared", position))
            return result

        async def committed(p):
            self.events.append(("commit", p.position))
            report = await commit(p)
            self.events.append(("committed", p.position))
            return report

        async def acknowledged(position):
            self.events.append(("ack", position))
            await acknowledge(position)

        pipeline.prepare = prepared  # type: ignore[method-assign]
        pipeline.commit = committed  # type: ignore[method-assign]
        pipeline.source.acknowledge = acknowledged  # type: ignore[method-assign]

    def kinds(self, kind: str) -> list[object]:
        return [value for k, value in self.events if k == kind]


@pytest.fixture(autouse=True)
def inline_decoding(monkeypatch):
    monkeypatch.setenv(ENV, "inline")


def test_groups_prepared_ahead_commit_and_acknowledge_in_order(pg_dsn, pg_target_dsn):
    """Forty transactions of inserts, updates and deletes, a column added half-way: groups
    are prepared while the one before commits; every commit starts only after the one before
    it was acknowledged; the group with the new column, new to the target, is prepared after
    the commit before it; the target ends equal to the source."""
    execute(
        pg_dsn,
        "CREATE TABLE items (id int PRIMARY KEY, v int)",
        "INSERT INTO items SELECT i, 0 FROM generate_series(1, 500) i",
    )

    async def scenario() -> Recorder:
        pipeline = make_pipeline(pg_dsn, pg_target_dsn)
        await pipeline.open()
        try:
            start, _ = await runner.ensure_backfilled(pipeline)
            for n in range(20):
                execute(
                    pg_dsn,
                    f"INSERT INTO items SELECT i, {n} FROM generate_series({1000 + n * 100},"
                    f" {1000 + n * 100 + 79}) i;"
                    f" UPDATE items SET v = v + 1 WHERE id % 20 = {n};"
                    f" DELETE FROM items WHERE id = {n + 1}",
                )
            execute(pg_dsn, "ALTER TABLE items ADD COLUMN note text")
            for n in range(20, 40):
                execute(
                    pg_dsn,
                    f"INSERT INTO items SELECT i, {n}, 'n{n}' FROM generate_series("
                    f"{1000 + n * 100}, {1000 + n * 100 + 79}) i;"
                    f" UPDATE items SET v = v + 1, note = 'u{n}' WHERE id % 20 = {n % 20}",
                )
            recorder = Recorder(pipeline)
            until = await pipeline.source.current_position()
            await runner.stream(pipeline, start, until)
            return recorder
        finally:
            await pipeline.close()

    recorder = asyncio.run(scenario())
    events = recorder.events
    commits = recorder.kinds("commit")
    assert len(commits) >= 10
    assert len(recorder.kinds("ahead")) >= len(commits) // 2
    # a commit starts only once the one before it returned and (with a position) was acked
    for i, (kind, position) in enumerate(events):
        flow = [e for e in events[:i] if e[0] in ("commit", "committed", "ack")]
        if kind == "commit" and flow:
            assert flow[-1][0] in ("committed", "ack"), events[: i + 1]
        if kind == "ack":  # right after its own group's commit returned
            assert flow[-1] == ("committed", position), events[: i + 1]
    acks = recorder.kinds("ack")
    assert acks == [p for p in commits if p is not None]  # each after its commit, in order
    assert acks == sorted(set(acks))  # positions: fixed-width hex, strictly rising
    # groups really were prepared while the commit before them ran
    overlapped = 0
    for i, (kind, _) in enumerate(events):
        if kind == "ahead":
            last = [k for k, _ in events[:i] if k in ("commit", "committed")]
            overlapped += bool(last) and last[-1] == "commit"
    assert overlapped >= 1
    assert any("new to the target" in str(why) for why in recorder.kinds("later"))
    source = rows(pg_dsn, "SELECT id, v, note FROM items ORDER BY id")
    assert rows(pg_target_dsn, "SELECT id, v, note FROM items ORDER BY id") == source


def test_a_commit_that_fails_in_flight_stops_an_idle_stream_at_once(pg_dsn, pg_target_dsn):
    """A live stream (no end position) whose only group with rows fails to commit: nothing
    else comes to wake the applier, yet the failure ends the stream within seconds, and its
    position is not acknowledged."""
    execute(
        pg_dsn,
        "CREATE TABLE items (id int PRIMARY KEY, v int)",
        "INSERT INTO items VALUES (1, 0)",
    )

    async def scenario() -> tuple[BaseException | None, Recorder, list[object]]:
        pipeline = make_pipeline(pg_dsn, pg_target_dsn)
        await pipeline.open()
        try:
            start, _ = await runner.ensure_backfilled(pipeline)
            recorder = Recorder(pipeline)
            commit = pipeline.commit

            failed: list[object] = []

            async def failing(prepared):
                if prepared.report.read:
                    failed.append(prepared.position)
                    raise RuntimeError("the commit failed")
                return await commit(prepared)

            pipeline.commit = failing  # type: ignore[method-assign]
            execute(pg_dsn, "UPDATE items SET v = 1 WHERE id = 1")
            try:
                await asyncio.wait_for(runner.stream(pipeline, start), 30)
            except RuntimeError as exc:
                return exc, recorder, failed
            return None, recorder, failed
        finally:
            await pipeline.close()

    error, recorder, failed = asyncio.run(scenario())
    assert isinstance(error, RuntimeError) and str(error) == "the commit failed"
    assert failed and not set(failed) & set(recorder.kinds("ack"))
    assert rows(pg_target_dsn, "SELECT v FROM items") == [(0,)]


@pytest.mark.parametrize("when", ["after_last_group", "before_last_group"])
def test_a_stop_after_the_drains_last_commit_interrupts_nothing(
    pg_dsn, pg_target_dsn, monkeypatch, when
):
    """``sync --once`` stopped (SIGTERM) once its last group committed, while the stream is
    still closing (the decode process holds it open for that group's acknowledgement): the
    drain is complete, not interrupted. Stopped one group earlier, it is interrupted."""
    monkeypatch.setenv(ENV, "process")
    execute(
        pg_dsn,
        "CREATE TABLE items (id int PRIMARY KEY, v int)",
        "INSERT INTO items SELECT i, 0 FROM generate_series(1, 10) i",
    )

    async def scenario() -> tuple[str, list[tuple[object, ...]]]:
        pipeline = make_pipeline(pg_dsn, pg_target_dsn, max_rows=5)
        await pipeline.open()
        try:
            await runner.ensure_backfilled(pipeline)
            for n in range(4):
                execute(pg_dsn, f"UPDATE items SET v = {n + 1} WHERE id > {n * 2}")
            stop = asyncio.Event()
            commit = pipeline.commit

            async def stopping(prepared):
                report = await commit(prepared)
                last = any(b.meta.get(DRAIN_END) for b in prepared.batches)
                if last == (when == "after_last_group") and prepared.report.read:
                    stop.set()
                return report

            pipeline.commit = stopping  # type: ignore[method-assign]
            try:
                await runner.sync_once(pipeline, stop=stop)
            except Interrupted:
                return "interrupted", rows(pg_target_dsn, "SELECT count(*) FROM items")
            return "complete", rows(pg_target_dsn, "SELECT v FROM items ORDER BY id")
        finally:
            await pipeline.close()

    outcome, found = asyncio.run(scenario())
    if when == "after_last_group":
        assert outcome == "complete"
        assert found == [(1,), (1,), (2,), (2,), (3,), (3,), (4,), (4,), (4,), (4,)]
    else:
        assert outcome == "interrupted"
