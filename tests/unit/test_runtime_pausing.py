"""Holding a paused table's changes and releasing them, against the SQLite store (no server)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pyarrow as pa

from syncengine.changes import ChangeBatch
from syncengine.config.models import BatchConfig
from syncengine.runtime import heldbatch, pausing
from syncengine.runtime.metrics import Metrics
from syncengine.state import SQLiteStateStore
from syncengine.state.base import Chunk


def batch(table: str, first: int, n: int, **meta: Any) -> ChangeBatch:
    ids = list(range(first, first + n))
    return ChangeBatch.build(
        table,
        pa.table({"id": pa.array(ids, pa.int64()), "v": pa.array([f"v{i}" for i in ids])}),
        ops=["u"] * n,
        positions=[f"{i:08d}" for i in ids],
        key=["id"],
        meta={"resume": f"{first + n - 1:08d}", **meta},
    )


class Pipeline:
    """What pausing uses of a pipeline; ``process`` records what it is given."""

    def __init__(self, state: SQLiteStateStore, max_rows: int = 4) -> None:
        self.name = "p"
        self.state = state
        self.metrics = Metrics()
        self.config = SimpleNamespace(batch=BatchConfig(max_rows=max_rows))
        self.released: list[list[str]] = []
        self.fail_after: int | None = None

    async def process(self, batches, position, *, release=False, target=None):
        assert release and position is None
        if self.fail_after is not None and len(self.released) >= self.fail_after:
            raise ConnectionError("target went away")
        self.released.append([p for b in batches for p in b.data.column("_pos").to_pylist()])


def hold(pipeline: Pipeline, group: list) -> list:
    """``hold_paused`` with the pauses as the applier reads them before each group."""
    return pausing.hold_paused(pipeline, group, pipeline.state.pauses("p"))  # type: ignore[arg-type]


def test_held_batches_round_trip_exactly():
    original = batch("public.b", 1, 3, oid=7)
    again = heldbatch.decode(heldbatch.encode(original))
    assert again.data.equals(original.data) and again.key == ("id",)
    assert again.table == "public.b" and again.meta == {"oid": 7}  # no resume: long past


def test_paused_table_is_held_once_even_when_the_group_is_replayed(tmp_path):
    state = SQLiteStateStore(tmp_path / "s.db")
    pipeline = Pipeline(state)
    state.request_pause("p", ["public.b"], "pausing")
    group = [batch("public.a", 1, 2), batch("public.b", 10, 3), batch("public.b", 13, 2)]
    flowing = hold(pipeline, group)
    assert [b.table for b in flowing] == ["public.a"]
    assert state.pauses("p")["public.b"].status == "paused"  # confirmed by the applier
    # the crash came before the target commit: the source sends the group again, overlapping
    replay = [batch("public.b", 12, 4), batch("public.a", 3, 1)]
    assert [b.table for b in hold(pipeline, replay)] == ["public.a"]
    pause = state.pauses("p")["public.b"]
    assert pause.held_rows == 6 and pause.held_through == f"{15:08d}"
    assert state.held_totals("p")["public.b"][0] == 2  # the group's two batches stored as one
    held = [heldbatch.decode(h.payload) for h in state.held_batches("p", "public.b", 10)]
    positions = [p for b in held for p in b.data.column("_pos").to_pylist()]
    assert positions == [f"{i:08d}" for i in range(10, 16)]
    # snapshot chunks of a paused table are not held
    chunk = batch("public.b", 20, 1, chunk=1)
    assert hold(pipeline, [chunk]) == [chunk]


def test_release_applies_in_order_survives_a_failure_and_ends_the_pause(tmp_path):
    state = SQLiteStateStore(tmp_path / "s.db")
    pipeline = Pipeline(state, max_rows=4)
    state.request_pause("p", ["public.b"], "paused")
    for first in range(0, 12, 3):
        hold(pipeline, [batch("public.b", first, 3)])
    assert state.request_resume("p", None) == ["public.b"]
    pipeline.fail_after = 1
    try:
        asyncio.run(pausing.control(pipeline))  # type: ignore[arg-type]
    except ConnectionError:
        pass
    assert state.pauses("p")["public.b"].status == "resuming"
    labels = {"pipeline": "p", "table": "public.b"}
    assert pipeline.metrics.registry.get_sample_value("syncengine_table_paused", labels) == 1
    assert state.pauses("p")["public.b"].held_rows == 12 - 6  # the first group was forgotten
    # changes arriving while it resumes are still held, behind the rest
    hold(pipeline, [batch("public.b", 12, 2)])
    pipeline.fail_after = None
    asyncio.run(pausing.control(pipeline))  # type: ignore[arg-type]
    order = [p for group in pipeline.released for p in group]
    assert order == [f"{i:08d}" for i in range(0, 14)]
    assert state.pauses("p") == {} and state.held_totals("p") == {}
    assert pipeline.metrics.registry.get_sample_value("syncengine_table_paused", labels) == 0
    held_gauge = "syncengine_table_held_changes"
    assert pipeline.metrics.registry.get_sample_value(held_gauge, labels) == 0
    # flowing again
    assert hold(pipeline, [batch("public.b", 20, 1)])[0].table == "public.b"


def test_pause_again_while_resuming_stops_the_release(tmp_path):
    state = SQLiteStateStore(tmp_path / "s.db")
    state.request_pause("p", ["t"], "paused")
    assert state.pauses("p")["t"].paused_at is not None  # paused at once: no process to confirm
    state.request_resume("p", ["t"])
    state.request_pause("p", ["t"], "pausing")
    assert state.pauses("p")["t"].status == "paused"


def test_table_status_states_and_counts(tmp_path):
    from syncengine.config.models import PipelineConfig
    from syncengine.runtime.tablestatus import table_status
    from syncengine.state.base import DeadLetter

    config = PipelineConfig.model_validate(
        {
            "source": {"type": "postgres", "dsn": "postgresql://x/y", "tables": ["a", "b", "c"]},
            "target": {"type": "postgres", "dsn": "postgresql://x/z"},
        }
    )
    state = SQLiteStateStore(tmp_path / "s.db")
    state.put_chunks(
        "p", [Chunk("public.c", 0, None, "5", "done"), Chunk("public.c", 1, "5", None)]
    )
    state.request_pause("p", ["public.b"], "paused")
    state.add_table_stats("p", {"public.a": (10, "2026-01-01T00:00:00+00:00", 0.5)})
    state.add_table_stats("p", {"public.a": (5, "2026-01-01T00:00:01+00:00", 0.25)})
    state.add_table_stats("p", {"public.gone": (3, None, None)})
    state.add_dead_letters([DeadLetter("p", "public.a", "map", "bad", "{}")])
    rows = {r["table"]: r for r in table_status("p", config, state)}  # type: ignore[arg-type]
    assert rows["public.a"]["state"] == "streaming" and rows["public.a"]["rows_applied"] == 15
    assert rows["public.a"]["last_change_at"] == "2026-01-01T00:00:01+00:00"
    assert rows["public.a"]["lag_seconds"] == 0.25 and rows["public.a"]["dead_letters"] == 1
    assert rows["public.b"]["state"] == "paused"
    assert rows["public.c"]["state"] == "snapshotting"
    assert (rows["public.c"]["chunks_done"], rows["public.c"]["chunks_total"]) == (1, 2)
    assert rows["public.gone"]["state"] == "removed"


def test_group_stats_count_per_source_table_vectorized():
    from datetime import UTC, datetime, timedelta

    from syncengine.runtime.tablestats import group_stats

    old = datetime.now(UTC) - timedelta(seconds=30)
    new = datetime.now(UTC) - timedelta(seconds=2)
    first = ChangeBatch.build(
        "public.a", pa.table({"id": [1, 2]}), ops=["c", "u"], positions=["1", "2"], ts=[old, new]
    )
    second = ChangeBatch.build("public.b", pa.table({"id": [3]}), ops=["d"], positions=["3"])
    stats = group_stats(
        [first, second], {"a": 2, "b_copy": 1}, {"a": "public.a", "b_copy": "public.b"}
    )
    rows, last, lag = stats["public.a"]
    assert rows == 2 and last == new.isoformat() and lag is not None and 1 < lag < 20
    assert stats["public.b"] == (1, None, None)  # no commit time sent
