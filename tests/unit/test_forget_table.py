"""Removing one removed table's state (``checkpoints remove``): the SQLite store's part, and the
refusals that keep a table the pipeline still reads (or a shared target table) intact."""

from __future__ import annotations

import pytest

from syncengine.config import parse_config
from syncengine.errors import UsageError
from syncengine.runtime.forget import check_removable, target_tables
from syncengine.state.base import Chunk, Conflict, DeadLetter, LagSample, table_chunks
from syncengine.state.sqlite import SQLiteStateStore

TABLES = [
    "chunks",
    "table_stats",
    "table_requests",
    "paused_tables",
    "held_changes",
    "dead_letters",
    "shadow",
    "conflicts",
    "lag_history",
]


def _fill(store: SQLiteStateStore, pipeline: str, source: str, target: str) -> None:
    store.put_chunks(pipeline, [Chunk(source, 0, None, "10", "done", 10)])
    store.put_chunks(table_chunks(pipeline), [Chunk(source, 0, None, None, "pending")])
    store.add_table_stats(pipeline, {source: (5, "2026-01-01T00:00:00+00:00", 0.5)})
    store.request_table(pipeline, source, "resnapshot", None)
    store.request_pause(pipeline, [source], "paused")
    store.add_dead_letters([DeadLetter(pipeline, source, "map", "bad", "{}")])
    store.add_lag_samples(pipeline, [LagSample(1000.0, source, 0.5, None, None, 5)], 3600, 1000)
    with store.transaction() as db:
        store.hold_batches(db, pipeline, source, [("0/10", 3, b"ipc")])
        store.write_shadow(db, pipeline, target, [("k", "h", None, "0/1")])
        conflict = store.park_conflict(
            db, Conflict(None, pipeline, target, "k", None, "{}", "{}", None)
        )
        store.hold_changes(db, pipeline, target, [(conflict, "k", "{}")])


def _counts(store: SQLiteStateStore) -> dict[str, int]:
    return {t: store.db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}


def test_forget_table_removes_that_tables_state_only(tmp_path):
    store = SQLiteStateStore(tmp_path / "state.db")
    _fill(store, "p", "public.c", "c")
    before = _counts(store)
    _fill(store, "p", "public.a", "a")
    _fill(store, "q", "public.c", "c")  # another pipeline's table of the same name
    keep = store.request_table("p", "public.c", "forget", '["c"]')
    gone = store.forget_table("p", "public.c", ["c"], keep_request=keep)
    assert gone == {
        "chunks": 2,
        "table_stats": 1,
        "table_requests": 1,
        "paused_tables": 1,
        "held_changes": 2,
        "dead_letters": 1,
        "shadow": 1,
        "conflicts": 1,
        "lag_history": 1,
    }
    after = _counts(store)
    # what is left: the two other tables' state, and the request asking for the removal
    assert after == {t: 2 * n + (t == "table_requests") for t, n in before.items()}
    assert [r.id for r in store.table_requests("p", open_only=False) if r.table == "public.c"] == [
        keep
    ]
    assert set(store.table_stats("p")) == {"public.a"}
    assert set(store.pauses("p")) == {"public.a"}
    assert {c.table for c in store.get_chunks("p")} == {"public.a"}
    assert set(store.get_shadow("p", "a", ["k"])) == {"k"}
    assert set(store.get_shadow("q", "c", ["k"])) == {"k"}
    # again: nothing left to remove, and the request row goes too
    assert sum(store.forget_table("p", "public.c", ["c"]).values()) == 1


CONFIG = """
pipelines:
  p:
    source: {type: postgres, dsn: "postgresql://x@localhost/db", tables: [public.a, public.b]}
    target: {type: postgres, dsn: "postgresql://x@localhost/t"}
    mappings:
      - {source: public.b, target: merged}
"""


def test_a_table_still_read_and_a_shared_target_are_refused():
    spec = parse_config(CONFIG).pipelines["p"]
    with pytest.raises(UsageError, match="still reads public.a"):
        check_removable("p", spec, "public.a", ["a"])
    assert target_tables(spec, "public.c", ()) == ["c"]
    check_removable("p", spec, "public.c", ["c"])
    with pytest.raises(UsageError, match="merged is written by public.b"):
        check_removable("p", spec, "public.c", ["merged"])
