"""The SQLite state store: versioned, owner-only, and intact after a SIGKILL mid-write."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from syncengine.errors import FatalError, LockHeld
from syncengine.state import Chunk, Conflict, DeadLetter, SQLiteStateStore

WRITER = textwrap.dedent(
    """
    import sys
    from syncengine.state import open_state
    store = open_state(sys.argv[1])  # a file here; a postgresql:// URL in the shared store's test
    i = 0
    while True:
        i += 1
        with store.transaction() as db:
            store.write_checkpoint(db, "p", "slot", f"{i:016X}", {"i": i})
            rows = [(str(k), f"h{i}", "{}", f"{i:016X}") for k in range(200)]
            store.write_shadow(db, "p", "t", rows)
        print(i, flush=True)
    """
)


@pytest.mark.parametrize("delay", [0.2, 0.35, 0.5, 0.8])
def test_killed_writer_leaves_last_committed_checkpoint(tmp_path, delay):
    path = tmp_path / "state.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    time.sleep(delay + 0.5)  # interpreter start-up, then writing
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    committed = [int(line) for line in out.split()]
    assert committed, "the writer committed nothing before it was killed"
    store = SQLiteStateStore(path)
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    checkpoint = store.get_checkpoint("p", "slot")
    assert checkpoint is not None
    # the last reported commit is durable; at most one more commit may have landed unreported
    assert committed[-1] <= checkpoint.details["i"] <= committed[-1] + 1
    shadow = store.get_shadow("p", "t", [str(k) for k in range(200)])
    assert {h for h, _, _ in shadow.values()} == {f"h{checkpoint.details['i']}"}


def test_store_file_is_owner_only(tmp_path):
    store = SQLiteStateStore(tmp_path / "deep" / "state.db")
    mode = stat.S_IMODE(os.stat(store.path).st_mode)
    assert mode == 0o600


def test_newer_format_is_refused(tmp_path):
    store = SQLiteStateStore(tmp_path / "state.db")
    store.db.execute("UPDATE meta SET value='99' WHERE name='format_version'")
    store.close()
    with pytest.raises(FatalError, match="newer than this syncengine"):
        SQLiteStateStore(tmp_path / "state.db")


def test_chunks_conflicts_dead_letters_roundtrip(tmp_path):
    store = SQLiteStateStore(tmp_path / "state.db")
    store.put_chunks("p", [Chunk("public.t", 0, None, "100"), Chunk("public.t", 1, "100", None)])
    store.put_chunks("p", [Chunk("public.t", 0, None, "100", "done", 100)])
    assert [c.status for c in store.get_chunks("p", "public.t")] == ["done", "pending"]
    with store.transaction() as db:
        cid = store.park_conflict(db, Conflict(None, "p", "t", "[1]", "{}", "{}", "{}", "{}"))
        store.hold_changes(db, "p", "t", [(cid, "[1]", '{"a": 1}'), (cid, "[1]", '{"a": 2}')])
    assert store.pending_conflict_keys("p", "t") == {"[1]": cid}
    assert store.held_changes(cid) == ['{"a": 1}', '{"a": 2}']
    with store.transaction() as db:
        store.mark_resolved(db, cid, "remote", "cli")
    assert store.pending_conflict_keys("p", "t") == {}
    assert store.add_dead_letters([DeadLetter("p", "t", "mapping", "cast failed", "{}")]) == 1
    assert store.counts("p") == {"pending_conflicts": 0, "dead_letters": 1}
    letter = store.list_dead_letters("p")[0]
    store.mark_replayed([letter.id])
    assert store.list_dead_letters("p") == []


def test_pipeline_lock_refuses_a_second_holder_and_frees_on_exit(tmp_path):
    store = SQLiteStateStore(tmp_path / "state.db")
    with store.lock("orders", "run"):
        with pytest.raises(LockHeld, match="'run'"):
            store.lock("orders", "backfill").acquire()
        store.lock("other", "sync").acquire().release()
    store.lock("orders", "backfill").acquire().release()


def test_purge_drops_only_tombstones_the_checkpoint_passed(tmp_path):
    store = SQLiteStateStore(tmp_path / "state.db")
    rows = [("a", "", None, "0001"), ("b", "", None, "0009"), ("c", "h", "{}", "0001")]
    with store.transaction() as db:
        store.write_shadow(db, "p", "t", rows)
        store.write_shadow(db, "q", "t", [("a", "", None, "0001")])
    with store.transaction() as db:
        store.purge_tombstones(db, "p", "0005")
    assert set(store.get_shadow("p", "t", ["a", "b", "c"])) == {"b", "c"}
    assert set(store.get_shadow("q", "t", ["a"])) == {"a"}  # another pipeline's stay


def test_table_stats_commit_without_a_flush_and_checkpoints_with_one(tmp_path):
    """Informational counters must not hold the event loop on a disk flush (a backfill's COPY
    pumps wait for it); a checkpoint still commits durably, and the setting is back after."""
    store = SQLiteStateStore(tmp_path / "state.db")
    seen: list[str] = []
    store.db.set_trace_callback(seen.append)
    store.add_table_stats("p", {"public.t": (5, None, None)})
    assert seen.index("PRAGMA synchronous=NORMAL") < seen.index("COMMIT")
    assert store.db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL again
    assert store.table_stats("p")["public.t"].rows_applied == 5
    seen.clear()
    with store.transaction() as db:
        store.write_checkpoint(db, "p", "slot", "0000000000000001", {})
    assert "COMMIT" in seen
    assert not any(s.startswith("PRAGMA synchronous") for s in seen)
