"""The shared Postgres state store answers as the embedded SQLite store does.

Proven here against a real PostgreSQL server (a fresh database per test): every concern's calls
(checkpoints, chunks, shadow rows, conflicts, dead letters, status and table counters, lag
history, pauses, table requests, forgetting a table) give the same results on
``PostgresStateStore`` as on ``SQLiteStateStore``, and the expected values. Only the times the
stores stamp themselves (``now()``) are normalised. Text compares bytewise (positions,
ordering), bytes and odd JSON (quotes, backslashes, ``%``, ``?``, unicode) survive the round
trip, floats keep every digit. What holds up when many processes share the store is in
``test_state_postgres_shared.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import fields, is_dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from syncengine.state import (
    Chunk,
    Conflict,
    DeadLetter,
    SQLiteStateStore,
    StoredCheckpoint,
)
from syncengine.state.base import HeldBatch, LagSample, Pause, TableRequest, TableStats
from syncengine.state.postgres import PostgresStateStore
from syncengine.state.schema import FORMAT_VERSION

T = TypeVar("T")
Store = SQLiteStateStore | PostgresStateStore

#: what a time the store stamps itself (``now()``) becomes once normalised
NOW = "<now>"
STAMPED = {"created_at", "updated_at", "resolved_at", "replayed_at", "requested_at", "paused_at"}


# --- the differential harness -------------------------------------------------------------


def _stamp(value: str | None) -> str | None:
    """A store's own timestamp: checked to be a recent ISO 8601 UTC time, then :data:`NOW`."""
    if value is None:
        return None
    when = datetime.fromisoformat(value)
    assert when.tzinfo is not None, value
    assert abs(datetime.now(UTC) - when) < timedelta(minutes=10), value
    return NOW


def normalised(value: Any) -> Any:
    """``value`` with every self-stamped time of every record in it replaced by :data:`NOW`."""
    if is_dataclass(value) and not isinstance(value, type):
        stamped = [f.name for f in fields(value) if f.name in STAMPED]
        return replace(value, **{name: _stamp(getattr(value, name)) for name in stamped})
    if isinstance(value, dict):
        return {k: normalised(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(normalised(v) for v in value)
    return value


class Both:
    """Runs each call on the SQLite and on the Postgres store: the results must be equal
    (after :func:`normalised`); returns that result, for the test to check its value."""

    def __init__(self, sqlite: SQLiteStateStore, postgres: PostgresStateStore) -> None:
        self.sqlite = sqlite
        self.postgres = postgres

    def __call__(self, call: Callable[[Any], T]) -> T:
        expected = normalised(call(self.sqlite))
        got = normalised(call(self.postgres))
        assert got == expected, "the Postgres store differs from the SQLite store"
        return expected


def in_tx(body: Callable[[Any, Any], T]) -> Callable[[Any], T]:
    """A call that runs ``body(store, db)`` in one of the store's write transactions."""

    def call(store: Store) -> T:
        with store.transaction() as db:
            return body(store, db)

    return call


@pytest.fixture
def same(tmp_path: Path, pg_dsn: str) -> Iterator[Both]:
    sqlite = SQLiteStateStore(tmp_path / "s.db")
    postgres = PostgresStateStore(pg_dsn)
    yield Both(sqlite, postgres)
    sqlite.close()
    postgres.close()


# --- differential: every concern ----------------------------------------------------------


def test_checkpoints(same: Both) -> None:
    same(lambda s: s.put_checkpoint("p", "slot", "00000000/0000000A", {"lsn": "0/A", "n": 1}))
    same(lambda s: s.put_checkpoint("p", "slot", "00000000/000000B0", {"lsn": "0/B0"}))
    for stream in ("a", "B"):
        same(lambda s, stream=stream: s.put_checkpoint("p", stream, "1"))
    same(lambda s: s.put_checkpoint("other", "slot", "2"))

    assert same(lambda s: s.get_checkpoint("p", "slot")) == StoredCheckpoint(
        "p", "slot", "00000000/000000B0", {"lsn": "0/B0"}, FORMAT_VERSION, NOW
    )
    assert same(lambda s: s.get_checkpoint("p", "missing")) is None
    # ordered bytewise: "B" < "a" < "slot"
    everything = same(lambda s: s.list_checkpoints())
    assert [(c.pipeline, c.stream) for c in everything] == [
        ("other", "slot"),
        ("p", "B"),
        ("p", "a"),
        ("p", "slot"),
    ]
    assert [c.stream for c in same(lambda s: s.list_checkpoints("p"))] == ["B", "a", "slot"]

    def commit(s: Store) -> None:
        with s.transaction() as db:
            s.write_checkpoint(db, "p", "tx", "5", {"x": [1, "ü"]})
            s.write_shadow(db, "p", "t", [("[1]", "h5", None, "5")])

    same(commit)
    assert same(lambda s: s.get_checkpoint("p", "tx")) == StoredCheckpoint(
        "p", "tx", "5", {"x": [1, "ü"]}, FORMAT_VERSION, NOW
    )

    def failing(s: Store) -> None:
        with pytest.raises(RuntimeError, match="boom"), s.transaction() as db:
            s.write_checkpoint(db, "p", "tx", "6")
            s.write_checkpoint(db, "p", "lost", "6")
            s.write_shadow(db, "p", "t", [("[1]", "h6", None, "6"), ("[2]", "h6", None, "6")])
            s.park_conflict(db, Conflict(None, "p", "t", "[2]", None, None, "{}", None))
            raise RuntimeError("boom")

    same(failing)  # nothing of the transaction stays
    assert same(
        lambda s: (
            s.get_checkpoint("p", "tx").position,
            s.get_checkpoint("p", "lost"),
            s.get_shadow("p", "t", ["[1]", "[2]"]),
            s.list_conflicts(status=None),
        )
    ) == ("5", None, {"[1]": ("h5", None, "5")}, [])

    same(lambda s: s.put_chunks("p", [Chunk("t", 0, None, None)]))
    assert same(lambda s: s.reset_checkpoints("p", "a")) == 1
    assert same(lambda s: s.reset_checkpoints("p", "a")) == 0
    assert same(lambda s: s.get_chunks("p")) == [Chunk("t", 0, None, None)]  # one stream: kept
    assert same(lambda s: s.reset_checkpoints("p")) == 3  # B, slot, tx
    assert same(lambda s: (s.list_checkpoints("p"), s.get_chunks("p"))) == ([], [])
    assert [c.pipeline for c in same(lambda s: s.list_checkpoints())] == ["other"]


def test_chunks(same: Both) -> None:
    plan = [
        Chunk("public.t", 0, None, "100"),
        Chunk("public.t", 1, "100", None),
        Chunk("public.U", 0, None, None),
    ]
    same(lambda s: s.put_chunks("p", plan))
    same(lambda s: s.put_chunks("other", [Chunk("public.t", 0, None, None)]))
    same(lambda s: s.put_chunks("p", [Chunk("public.t", 0, None, "100", "done", 2**40)]))

    done = Chunk("public.t", 0, None, "100", "done", 2**40)
    assert same(lambda s: s.get_chunks("p")) == [plan[2], done, plan[1]]  # "U" < "t"
    assert same(lambda s: s.get_chunks("p", "public.t")) == [done, plan[1]]
    same(lambda s: s.clear_chunks("p", "public.t"))
    assert same(lambda s: s.get_chunks("p")) == [plan[2]]
    same(lambda s: s.clear_chunks("p"))
    assert same(lambda s: s.get_chunks("p")) == []
    assert same(lambda s: s.get_chunks("other")) == [Chunk("public.t", 0, None, None)]


def test_shadow_rows_and_tombstones(same: Both) -> None:
    rows = [(f"[{i}]", f"h{i}", json.dumps({"id": i}), f"{i:08X}/00000000") for i in range(1200)]
    same(in_tx(lambda s, db: s.write_shadow(db, "p", "t", rows)))
    keys = [k for k, *_ in rows] + ["[missing]"]
    assert same(lambda s: s.get_shadow("p", "t", keys)) == {k: (h, b, p) for k, h, b, p in rows}
    assert same(lambda s: s.get_shadow("p", "t", [])) == {}

    # upserts and deletes in one call
    same(in_tx(lambda s, db: s.write_shadow(db, "p", "t", [("[0]", "new", None, "X")], ["[1]"])))
    assert same(lambda s: s.get_shadow("p", "t", ["[0]", "[1]"])) == {"[0]": ("new", None, "X")}

    same(in_tx(lambda s, db: s.clear_shadow(db, "p", "t")))
    assert same(lambda s: s.get_shadow("p", "t", keys)) == {}

    tombstones = [
        ("[a]", "", None, "00000000/0000000A"),  # before the checkpoint: purged
        ("[b]", "", None, "00000000/000000B0"),  # at the checkpoint: kept
        ("[c]", "", None, "00000000/000000aa"),  # "a" > "B" bytewise (not in a locale): kept
        ("[d]", "live", "{}", "00000000/00000001"),  # not a tombstone: kept
    ]
    same(in_tx(lambda s, db: s.write_shadow(db, "p", "t", tombstones)))
    same(
        in_tx(lambda s, db: s.write_shadow(db, "p", "u", [("[e]", "", None, "00000000/00000001")]))
    )
    same(in_tx(lambda s, db: s.write_shadow(db, "q", "t", [("[f]", "", None, "0")])))
    same(in_tx(lambda s, db: s.purge_tombstones(db, "p", before="00000000/000000B0")))

    assert same(lambda s: s.get_shadow("p", "t", ["[a]", "[b]", "[c]", "[d]"])) == {
        "[b]": ("", None, "00000000/000000B0"),
        "[c]": ("", None, "00000000/000000aa"),
        "[d]": ("live", "{}", "00000000/00000001"),
    }
    assert same(lambda s: s.get_shadow("p", "u", ["[e]"])) == {}  # every table of the pipeline
    assert same(lambda s: s.get_shadow("q", "t", ["[f]"])) == {"[f]": ("", None, "0")}


#: held change JSON that a careless placeholder translation or encoding would mangle
AWKWARD = json.dumps(
    {
        "quote": 'O\'Brien "quoted"',
        "path": "C:\\dir\\n",
        "pct": "100% %s %%",
        "ask": "? ?",
        "u": "ß😀é",
    },
    ensure_ascii=False,
)
ESCAPED = '{"raw": "\\\\ \\" \\u00e9 % ?"}'


def test_conflicts_held_changes_and_audit(same: Both) -> None:
    first_conflict = Conflict(None, "p", "t", "[1]", '{"v": 0}', '{"v": 1}', '{"v": 2}', '{"v": 3}')
    second_conflict = Conflict(None, "p", "u", "[2]", None, None, "{}", None)

    def park(s: Store) -> tuple[int, int]:
        with s.transaction() as db:
            first = s.park_conflict(db, first_conflict)
            second = s.park_conflict(db, second_conflict)
            s.hold_changes(db, "p", "t", [(first, "[1]", AWKWARD), (first, "[1]", ESCAPED)])
            s.hold_changes(db, "back", "t", [(first, "[1]", '{"dir": "back"}')])
            s.hold_changes(db, "p", "u", [(second, "[2]", "{}")])
        return first, second

    assert same(park) == (1, 2)
    pending = [
        replace(first_conflict, id=1, created_at=NOW),
        replace(second_conflict, id=2, created_at=NOW),
    ]
    assert same(lambda s: s.list_conflicts()) == pending
    assert same(lambda s: s.list_conflicts("p")) == pending
    assert same(lambda s: s.list_conflicts("other")) == []
    assert same(lambda s: s.get_conflict(2)) == pending[1]
    assert same(lambda s: s.get_conflict(99)) is None
    assert same(lambda s: s.pending_conflict_keys("p", "t")) == {"[1]": 1}
    assert same(lambda s: s.held_changes(1)) == [AWKWARD, ESCAPED, '{"dir": "back"}']
    assert same(lambda s: s.held_changes(1, "p")) == [AWKWARD, ESCAPED]
    assert same(lambda s: s.held_changes(1, "back")) == ['{"dir": "back"}']
    assert json.loads(AWKWARD)["pct"] == "100% %s %%"

    def resolve(s: Store) -> None:
        with s.transaction() as db:
            s.mark_resolved(db, 1, "remote", "alice")
            s.write_audit(
                db,
                "p",
                "t",
                [("[1]", "manual", "remote", "alice"), ("[1]", "manual", "note ? %s \\", "bob")],
            )

    same(resolve)
    resolved = replace(
        pending[0], status="resolved", resolved_at=NOW, resolution="remote", decided_by="alice"
    )
    assert same(lambda s: s.get_conflict(1)) == resolved
    assert same(lambda s: s.held_changes(1)) == []
    assert same(lambda s: s.held_changes(2)) == ["{}"]
    assert same(lambda s: s.pending_conflict_keys("p", "t")) == {}
    assert same(lambda s: s.pending_conflict_keys("p", "u")) == {"[2]": 2}
    assert same(lambda s: s.list_conflicts("p")) == [pending[1]]
    assert same(lambda s: s.list_conflicts(status=None)) == [resolved, pending[1]]
    assert same(lambda s: s.list_conflicts("p", "resolved")) == [resolved]
    audit = same(
        lambda s: [
            tuple(row)
            for row in s.db.execute(
                "SELECT id, pipeline, target_table, row_key, strategy, outcome, decided_by "
                "FROM audit ORDER BY id"
            )
        ]
    )
    assert audit == [
        (1, "p", "t", "[1]", "manual", "remote", "alice"),
        (2, "p", "t", "[1]", "manual", "note ? %s \\", "bob"),
    ]


def test_dead_letters(same: Both) -> None:
    letters = [
        DeadLetter("p", "t", "mapping", "cast failed: 'x' ? %s", '{"v": "\\\\ é"}', "0/A"),
        DeadLetter("p", "u", "apply", "constraint", "{}"),
        DeadLetter("q", "t", "apply", "other pipeline", "{}", "1"),
    ]
    assert same(lambda s: s.add_dead_letters(letters)) == 3
    assert same(lambda s: s.add_dead_letters([])) == 0
    stored = [replace(d, id=i, created_at=NOW) for i, d in enumerate(letters, start=1)]
    assert same(lambda s: s.list_dead_letters("p")) == stored[:2]
    assert same(lambda s: s.list_dead_letters()) == stored

    same(lambda s: s.mark_superseded([(1, "0/B0")]))
    same(lambda s: s.mark_replayed([2]))
    same(lambda s: s.mark_superseded([(2, "0/C0")]))  # replayed already: left as it is
    superseded = replace(stored[0], superseded="0/B0")
    replayed = replace(stored[1], replayed_at=NOW)
    assert same(lambda s: s.list_dead_letters("p")) == [superseded]
    assert same(lambda s: s.list_dead_letters("p", include_replayed=True)) == [
        superseded,
        replayed,
    ]
    assert same(lambda s: s.add_dead_letters([letters[1]])) == 1
    everything = same(lambda s: s.list_dead_letters(include_replayed=True))
    assert [d.id for d in everything] == [1, 2, 3, 4]


def test_status_counts_and_table_stats(same: Both) -> None:
    assert same(lambda s: s.get_status("p")) == {}
    status = {"rows_applied": 2**40, "last_error": "boom ? %s \\ ü", "nested": {"a": [1.5, None]}}
    same(lambda s: s.put_status("p", status))
    same(lambda s: s.put_status("p", {**status, "rows_applied": 2**40 + 1}))
    assert same(lambda s: s.get_status("p")) == {**status, "rows_applied": 2**40 + 1}
    assert same(lambda s: s.get_status("q")) == {}

    # a cluster stream attempt's beat: who applies the pipeline now, and since when
    assert same(lambda s: s.applier("p")) is None
    same(lambda s: s.beat_applier("p", "w1 attempt 1", 1_700_000_000.25))
    same(lambda s: s.beat_applier("p", "w2 attempt 2", 1_700_000_001.5))
    assert same(lambda s: s.applier("p")) == ("w2 attempt 2", 1_700_000_001.5)
    same(lambda s: s.end_applier("p", "w1 attempt 1"))  # not the one beating: left alone
    assert same(lambda s: s.applier("p")) == ("w2 attempt 2", 1_700_000_001.5)
    same(lambda s: s.end_applier("p", "w2 attempt 2"))
    assert same(lambda s: s.applier("p")) is None
    assert same(lambda s: s.get_status("p"))["rows_applied"] == 2**40 + 1

    def open_work(s: Store) -> None:
        with s.transaction() as db:
            s.park_conflict(db, Conflict(None, "p", "t", "[1]", None, None, "{}", None))
            done = s.park_conflict(db, Conflict(None, "p", "u", "[2]", None, None, "{}", None))
            s.mark_resolved(db, done, "local", "cli")
        s.add_dead_letters([DeadLetter("p", "src.t", "apply", "r", "{}")] * 2)
        s.add_dead_letters([DeadLetter("p", "src.u", "apply", "r", "{}")])
        s.add_dead_letters([DeadLetter("q", "src.t", "apply", "r", "{}")])
        s.mark_replayed([3])

    same(open_work)
    assert same(lambda s: s.counts("p")) == {"pending_conflicts": 1, "dead_letters": 2}
    assert same(lambda s: s.table_counts("p")) == {
        "dead_letters": {"src.t": 2},
        "pending_conflicts": {"t": 1},
    }

    later, earlier, latest = (f"2026-01-01T00:00:0{n}+00:00" for n in (2, 1, 3))
    same(lambda s: s.add_table_stats("p", {"t": (5, later, 0.123456789), "u": (1, None, None)}))
    same(lambda s: s.add_table_stats("p", {"t": (7, earlier, None), "u": (2, earlier, 2.5)}))
    same(lambda s: s.add_table_stats("p", {}))
    assert same(lambda s: s.table_stats("p")) == {
        "t": TableStats("t", 12, later, 0.123456789, NOW),  # the later change time stays
        "u": TableStats("u", 3, earlier, 2.5, NOW),
    }
    same(lambda s: s.add_table_stats("p", {"t": (2**40, latest, 0.1 + 0.2)}))
    assert same(lambda s: s.table_stats("p")["t"]) == TableStats(
        "t", 12 + 2**40, latest, 0.30000000000000004, NOW
    )
    assert same(lambda s: s.table_stats("q")) == {}


def test_lag_history(same: Both) -> None:
    samples = [
        LagSample(1000.0, "", 1.5, 5_000_000_000, 6_000_000_000, 10),
        LagSample(1000.0, "public.t", 0.123456789, None, None, 7),
        LagSample(1010.25, "", None, None, None, 0),
        LagSample(1010.25, "public.U", 2.0, None, None, 1),
    ]
    same(lambda s: s.add_lag_samples("p", samples, keep_seconds=3600, now=1020.0))
    same(lambda s: s.add_lag_samples("q", [LagSample(1000.0)], keep_seconds=3600, now=1020.0))
    # a second sample at the same time and table: the first stays
    same(lambda s: s.add_lag_samples("p", [LagSample(1000.0, "", 99.0)], 3600, now=1020.0))

    assert same(lambda s: s.lag_samples("p", since=0)) == [samples[0], samples[2]]
    assert same(lambda s: s.lag_samples("p", since=0, table="public.t")) == [samples[1]]
    assert same(lambda s: s.lag_samples("p", since=0, table=None)) == samples
    assert same(lambda s: s.lag_samples("p", since=1005)) == [samples[2]]

    # written at 5000 keeping 3995 s: what is older than 1005 goes, of this pipeline only
    newest = LagSample(5000.0, "", 0.5)
    same(lambda s: s.add_lag_samples("p", [newest], keep_seconds=3995, now=5000.0))
    assert same(lambda s: s.lag_samples("p", since=0, table=None)) == [*samples[2:], newest]
    assert same(lambda s: s.lag_samples("q", since=0)) == [LagSample(1000.0)]


def test_pauses_hold_bytes_and_release(same: Both) -> None:
    arrow = b"\x00\xff\xfe\x80ARROW1\x00"  # NUL and bytes that are no UTF-8
    every_byte = bytes(range(256))
    same(lambda s: s.request_pause("p", ["public.t", "public.u"], "pausing"))
    same(lambda s: s.request_pause("p", ["public.v"], "paused"))
    assert same(lambda s: s.pauses("p")) == {
        "public.t": Pause("public.t", "pausing", None, 0, NOW, None),
        "public.u": Pause("public.u", "pausing", None, 0, NOW, None),
        "public.v": Pause("public.v", "paused", None, 0, NOW, NOW),
    }
    assert same(lambda s: sorted(s.confirm_pauses("p"))) == ["public.t", "public.u"]
    assert same(lambda s: s.confirm_pauses("p")) == []

    batches = [("00000000/0000000A", 3, arrow), ("00000000/000000B0", 2, every_byte)]
    same(in_tx(lambda s, db: s.hold_batches(db, "p", "public.t", batches)))
    same(in_tx(lambda s, db: s.hold_batches(db, "p", "public.t", [("00000000/000000C0", 4, b"")])))
    same(in_tx(lambda s, db: s.hold_batches(db, "p", "public.u", [])))

    held = [
        HeldBatch(1, "00000000/0000000A", arrow),
        HeldBatch(2, "00000000/000000B0", every_byte),
        HeldBatch(3, "00000000/000000C0", b""),
    ]
    assert same(lambda s: s.held_batches("p", "public.t", 10)) == held
    assert (
        same(lambda s: [type(b.payload) for b in s.held_batches("p", "public.t", 10)])
        == [bytes] * 3
    )
    assert same(lambda s: s.held_batches("p", "public.t", 2)) == held[:2]
    assert same(lambda s: s.held_totals("p")) == {"public.t": (3, len(arrow) + 256)}
    assert same(lambda s: s.pauses("p")["public.t"]) == Pause(
        "public.t", "paused", "00000000/000000C0", 9, NOW, NOW
    )

    assert same(lambda s: s.request_resume("p", ["public.t", "no.such"])) == ["public.t"]
    assert same(in_tx(lambda s, db: s.finish_resume(db, "p", "public.t"))) is False  # holds 3
    same(in_tx(lambda s, db: s.release_batches(db, "p", "public.t", [1, 2], 5)))
    assert same(lambda s: s.held_batches("p", "public.t", 10)) == held[2:]
    assert same(lambda s: s.pauses("p")["public.t"].held_rows) == 4
    same(in_tx(lambda s, db: s.release_batches(db, "p", "public.t", [3], 99)))  # floors at 0
    assert same(lambda s: s.pauses("p")["public.t"].held_rows) == 0
    assert same(lambda s: s.held_totals("p")) == {}
    assert same(in_tx(lambda s, db: s.finish_resume(db, "p", "public.t"))) is True
    assert same(lambda s: sorted(s.pauses("p"))) == ["public.u", "public.v"]

    # resume everything, then pause a resuming table again: it is paused, not pausing
    assert same(lambda s: s.request_resume("p", None)) == ["public.u", "public.v"]
    same(lambda s: s.request_pause("p", ["public.u"], "pausing"))
    assert same(lambda s: {t: p.status for t, p in s.pauses("p").items()}) == {
        "public.u": "paused",
        "public.v": "resuming",
    }


def test_table_requests(same: Both) -> None:
    where = "id > 5 AND note <> '?%s'"
    assert same(lambda s: s.request_table("p", "public.t", "resnapshot", None)) == 1
    assert same(lambda s: s.request_table("p", "public.t", "resnapshot", None)) == 1
    assert same(lambda s: s.request_table("p", "public.t", "resnapshot", where)) == 2
    assert same(lambda s: s.request_table("p", "public.t", "resnapshot", where)) == 2
    assert same(lambda s: s.request_table("q", "public.t", "resnapshot", None)) == 3

    same(lambda s: s.update_table_request(1, "running", target_empty=True))
    same(lambda s: s.update_table_request(2, "running", target_empty=False))
    same(lambda s: s.update_table_request(1, "running", target_empty=None))  # keeps True
    first = TableRequest(1, "p", "public.t", "resnapshot", None, "running", None, NOW, NOW, True)
    second = TableRequest(2, "p", "public.t", "resnapshot", where, "running", None, NOW, NOW, False)
    assert same(lambda s: s.table_requests("p")) == [first, second]

    same(lambda s: s.update_table_request(2, "failed", error="boom ? %s"))
    failed = replace(second, status="failed", error="boom ? %s")
    assert same(lambda s: s.table_requests("p")) == [first]
    assert same(lambda s: s.table_requests("p", open_only=False)) == [first, failed]
    assert same(lambda s: [r.target_empty for r in s.table_requests("q")]) == [None]

    # once the open request is done, asking again is a new request
    same(lambda s: s.update_table_request(1, "done"))
    assert same(lambda s: s.request_table("p", "public.t", "resnapshot", None)) == 4


def _table_state(s: Store, table: str, target: str) -> int:
    """Some of everything a source ``table`` (written to ``target``) keeps; a request id."""
    s.put_chunks("p", [Chunk(table, 0, None, None)])
    s.put_chunks("p/tables", [Chunk(table, 0, None, None)])
    s.add_table_stats("p", {table: (1, None, None)})
    s.add_dead_letters([DeadLetter("p", table, "apply", "r", "{}")])
    s.add_lag_samples("p", [LagSample(1000.0, table, 1.0), LagSample(1000.0, "", 1.0)], 60, 1000)
    s.request_pause("p", [table], "paused")
    with s.transaction() as db:
        s.hold_batches(db, "p", table, [("0/1", 1, b"\x00")])
        s.write_shadow(db, "p", target, [("[1]", "h", None, "0/1"), ("[2]", "", None, "0/1")])
        conflict = s.park_conflict(db, Conflict(None, "p", target, "[1]", None, None, "{}", None))
        s.hold_changes(db, "p", target, [(conflict, "[1]", "{}")])
        s.write_audit(db, "p", target, [("[1]", "manual", "held", "cli")])
    s.request_table("p", table, "resnapshot", "id > 1")
    return s.request_table("p", table, "resnapshot", None)


def test_forget_table(same: Both) -> None:
    def forget(s: Store) -> dict[str, int]:
        kept = _table_state(s, "public.t", "t")
        _table_state(s, "public.u", "u")
        return s.forget_table("p", "public.t", ["t"], keep_request=kept)

    assert same(forget) == {
        "chunks": 2,
        "table_stats": 1,
        "paused_tables": 1,
        "dead_letters": 1,
        "lag_history": 1,
        "held_changes": 2,  # the pause's batch and the change held behind the conflict
        "shadow": 2,
        "conflicts": 1,
        "table_requests": 1,
    }
    left = same(
        lambda s: (
            sorted({c.table for c in s.get_chunks("p")}),
            sorted(s.table_stats("p")),
            sorted(s.pauses("p")),
            sorted({d.table for d in s.list_dead_letters("p")}),
            sorted({x.table for x in s.lag_samples("p", 0, None)}),
            [c.table for c in s.list_conflicts("p")],
            sorted(s.held_totals("p")),
            s.get_shadow("p", "t", ["[1]", "[2]"]),
            len(s.get_shadow("p", "u", ["[1]", "[2]"])),
            [(r.table, r.where) for r in s.table_requests("p")],
            s.db.execute("SELECT COUNT(*) FROM audit").fetchone()[0],
        )
    )
    assert left == (
        ["public.u"],
        ["public.u"],
        ["public.u"],
        ["public.u"],
        ["", "public.u"],
        ["u"],
        ["public.u"],
        {},
        2,
        [("public.t", None), ("public.u", "id > 1"), ("public.u", None)],
        2,  # the audit is history: it stays
    )
