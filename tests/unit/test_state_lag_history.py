"""The lag history in the state store: the daemon's samples, read back by window, pruned as
they are written, recorded from the supervisor's probes, and added to an older store."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from syncengine.sources.base import SourceLag
from syncengine.state import SQLiteStateStore
from syncengine.state.base import LagSample
from syncengine.state.schema import FORMAT_VERSION


@dataclass
class Counting:
    """What the recorder reads of a pipeline: its name and its running total applied."""

    name: str = "p"
    rows_applied: int = 0


def test_samples_round_trip_by_window_and_table(tmp_path):
    store = SQLiteStateStore(tmp_path / "state.db")
    store.add_lag_samples(
        "p",
        [
            LagSample(1000.0, "", 1.5, 4096, 8192, 10),
            LagSample(1000.0, 'public."Ta""ble"', 0.5, applied=10),
        ],
        keep_seconds=3600,
        now=1000.0,
    )
    store.add_lag_samples("p", [LagSample(1010.0, "", 0.25, 0, 8192, 3)], 3600, 1010.0)
    store.add_lag_samples("q", [LagSample(1010.0, "", 9.0)], 3600, 1010.0)
    assert store.lag_samples("p", 0.0) == [
        LagSample(1000.0, "", 1.5, 4096, 8192, 10),
        LagSample(1010.0, "", 0.25, 0, 8192, 3),
    ]
    assert [s.at for s in store.lag_samples("p", 1005.0)] == [1010.0]
    assert store.lag_samples("p", 0.0, 'public."Ta""ble"') == [
        LagSample(1000.0, 'public."Ta""ble"', 0.5, applied=10)
    ]
    assert len(store.lag_samples("p", 0.0, table=None)) == 3
    assert store.lag_samples("q", 0.0) == [LagSample(1010.0, "", 9.0)]


def test_writing_prunes_what_is_older_than_keep(tmp_path):
    store = SQLiteStateStore(tmp_path / "state.db")
    for at in range(0, 200, 10):
        store.add_lag_samples("p", [LagSample(float(at), applied=1)], keep_seconds=60, now=at)
    store.add_lag_samples("q", [LagSample(0.0)], keep_seconds=60, now=0.0)
    assert [s.at for s in store.lag_samples("p", 0.0)] == [
        130.0,
        140.0,
        150.0,
        160.0,
        170.0,
        180.0,
        190.0,
    ]
    # another pipeline's samples are its own to prune
    assert [s.at for s in store.lag_samples("q", 0.0)] == [0.0]
    rows = store.db.execute("SELECT COUNT(*) FROM lag_history WHERE pipeline='p'").fetchone()
    assert rows == (7,)


def test_a_store_from_before_the_history_is_migrated(tmp_path):
    """A format-3 store (no lag_history table) keeps its checkpoints and gains the table."""
    path = tmp_path / "state.db"
    old = SQLiteStateStore(path)
    old.put_checkpoint("p", "slot", "0/16B3748")
    old.db.execute("DROP TABLE lag_history")
    old.db.execute("UPDATE meta SET value='3' WHERE name='format_version'")
    old.close()
    with sqlite3.connect(path) as raw:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "lag_history" not in tables

    store = SQLiteStateStore(path)
    assert store.db.execute("SELECT value FROM meta WHERE name='format_version'").fetchone() == (
        str(FORMAT_VERSION),
    )
    assert FORMAT_VERSION >= 4
    checkpoint = store.get_checkpoint("p", "slot")
    assert checkpoint is not None and checkpoint.position == "0/16B3748"
    store.add_lag_samples("p", [LagSample(5.0, "", 0.1)], 3600, 5.0)
    assert store.lag_samples("p", 0.0) == [LagSample(5.0, "", 0.1)]


def test_recorder_writes_one_sample_per_interval_with_throughput_and_busy_tables(tmp_path):
    from syncengine.runtime.laghistory import LagRecorder

    store = SQLiteStateStore(tmp_path / "state.db")
    store.add_table_stats("p", {"public.a": (100, None, 0.5)})  # before the recorder started
    pipeline = Counting(rows_applied=100)
    recorder = LagRecorder(pipeline, store, interval=10.0, keep=3600.0)
    lag = SourceLag("0/16B3748", lag_bytes=2048, lag_seconds=1.25, retained_wal_bytes=4096)

    first = recorder.observe(lag, now=1000.0)
    assert first == [LagSample(1000.0, "", 1.25, 2048, 4096, 0)]
    pipeline.rows_applied += 30
    store.add_table_stats("p", {"public.a": (20, None, 0.75), "public.b": (10, None, 2.0)})
    assert recorder.observe(lag, now=1005.0) == []  # not due yet
    second = recorder.observe(None, now=1010.0)  # a failed probe: throughput still counts
    assert second == [
        LagSample(1010.0, "", None, None, None, 30),
        LagSample(1010.0, "public.a", 0.75, applied=20),
        LagSample(1010.0, "public.b", 2.0, applied=10),
    ]
    third = recorder.observe(lag, now=1020.0)  # nothing applied: no table rows
    assert third == [LagSample(1020.0, "", 1.25, 2048, 4096, 0)]
    assert len(store.lag_samples("p", 0.0, table=None)) == 5


def test_trend_sums_up_the_hour_for_status():
    from syncengine.runtime.laghistory import trend

    assert trend([]) is None
    samples = [
        LagSample(0.0, "", 2.0, applied=999),  # counts the time before the hour
        LagSample(10.0, "", 9.0, applied=50),
        LagSample(20.0, "", None, applied=30),  # a failed probe
        LagSample(30.0, "", 0.5, applied=10),
    ]
    assert trend(samples) == {
        "samples": 4,
        "span_seconds": 30.0,
        "first_seconds": 2.0,
        "last_seconds": 0.5,
        "max_seconds": 9.0,
        "applied_per_second": 3.0,
    }


def test_a_format_4_store_gains_the_requests_target_empty_column(tmp_path):
    """A format-4 store's table requests keep their rows and gain ``target_empty``."""
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as raw:
        raw.execute(
            "CREATE TABLE table_requests (id INTEGER NOT NULL, pipeline TEXT NOT NULL, "
            "source_table TEXT NOT NULL, kind TEXT NOT NULL, where_sql TEXT, status TEXT NOT "
            "NULL, error TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY "
            "(id))"
        )
        raw.execute(
            "INSERT INTO table_requests VALUES (1, 'p', 'public.a', 'resnapshot', NULL, "
            "'running', NULL, 'x', 'x')"
        )
        raw.execute(
            "CREATE TABLE meta (name TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (name))"
        )
        raw.execute("INSERT INTO meta VALUES ('format_version', '4')")
    store = SQLiteStateStore(path)
    (request,) = store.table_requests("p")
    assert (request.table, request.status, request.target_empty) == ("public.a", "running", None)
    store.update_table_request(request.id, "running", target_empty=True)
    store.update_table_request(request.id, "running")  # (None leaves what is noted)
    (request,) = store.table_requests("p")
    assert request.target_empty is True
    store.close()
