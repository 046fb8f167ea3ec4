"""The manual queue on an in-memory target: park, hold, keep other keys flowing, resolve, drain."""

from __future__ import annotations

import asyncio
import json

import pytest

from syncengine.conflicts.manual import resolve_conflict
from syncengine.errors import UsageError
from tests.unit.strategies.test_strategies_resolver import SPEC, Harness, batch, key, t


def parked_setup(tmp_path):
    h = Harness(tmp_path, "manual")
    h.seed()
    h.target.edit("items", key(1), name="hand")
    r = h.run(
        batch(
            [
                {"id": 1, "name": "src1", "qty": 1, "updated_at": t(20)},
                {"id": 2, "name": "flows", "qty": 2, "updated_at": t(20)},
            ],
            ["u", "u"],
            10,
        )
    )
    assert (r.conflicts, r.parked, r.held) == (1, 1, 0)
    return h


def later_changes(h: Harness):
    first = batch([{"id": 1, "name": "src2", "qty": 5, "updated_at": t(21)}], ["u"], 20)
    r1 = h.run(first)
    second = batch(
        [
            {"id": 1, "name": None, "qty": 6, "updated_at": t(22)},
            {"id": 3, "name": "other", "qty": 3, "updated_at": t(22)},
        ],
        ["u", "u"],
        30,
        unsent={"name": [True, False]},
    )
    r2 = h.run(second)
    return r1, r2, second


def test_park_then_hold_then_resolve_drains_in_order(tmp_path):
    h = parked_setup(tmp_path)
    assert h.row(1)["name"] == "hand" and h.row(2)["name"] == "flows"
    [conflict] = h.state.list_conflicts("p")
    assert json.loads(conflict.local)["name"] == "hand"
    assert json.loads(conflict.remote)["name"] == "src1"
    assert json.loads(conflict.base)["name"] == "n1"
    assert json.loads(conflict.delta)["remote"]  # the deepdiff delta base → remote

    r1, r2, _ = later_changes(h)
    assert (r1.held, r2.held, r2.conflicts) == (1, 1, 0)
    assert h.row(1)["name"] == "hand" and h.row(3)["name"] == "other"
    assert len(h.state.held_changes(conflict.id)) == 2

    done = asyncio.run(resolve_conflict(h.target, h.state, conflict.id, "local", "cli:test"))
    assert done.released == 2
    # local kept "hand"; then src2 (name src2, qty 5); then qty 6 with name unsent
    assert (h.row(1)["name"], h.row(1)["qty"]) == ("src2", 6)
    assert h.state.list_conflicts("p") == []
    assert h.state.held_changes(conflict.id) == []
    audit = h.state.db.execute("SELECT outcome, decided_by FROM audit ORDER BY id").fetchall()
    assert audit[-1] == ("take_local", "cli:test")
    # the key flows normally again
    h.run(batch([{"id": 1, "name": "after", "qty": 7, "updated_at": t(30)}], ["u"], 40))
    assert h.row(1)["name"] == "after"


def test_resolve_with_merged_row_and_errors(tmp_path):
    h = parked_setup(tmp_path)
    [conflict] = h.state.list_conflicts("p")
    merged = json.dumps({"name": "both", "qty": 42, "updated_at": "2024-01-01T00:25:00+00:00"})
    asyncio.run(
        resolve_conflict(h.target, h.state, conflict.id, "merged", "cli:t", merged_json=merged)
    )
    assert (h.row(1)["name"], h.row(1)["qty"]) == ("both", 42)
    with pytest.raises(UsageError, match="already resolved"):
        asyncio.run(resolve_conflict(h.target, h.state, conflict.id, "remote", "cli:t"))
    with pytest.raises(UsageError, match="no conflict"):
        asyncio.run(resolve_conflict(h.target, h.state, 999, "remote", "cli:t"))


def test_take_remote_and_auto_merge(tmp_path):
    h = parked_setup(tmp_path)
    [conflict] = h.state.list_conflicts("p")
    asyncio.run(resolve_conflict(h.target, h.state, conflict.id, "remote", "cli:t"))
    assert h.row(1)["name"] == "src1"

    h2 = parked_setup(tmp_path / "merge")
    h2.target.edit("items", key(1), qty=77)  # a second hand edit, not in the parked local
    [c2] = h2.state.list_conflicts("p")
    asyncio.run(resolve_conflict(h2.target, h2.state, c2.id, "merged", "cli:t"))
    # parked: base n1/1, local hand/1, remote src1/1 → name changed on both: tie remote
    assert (h2.row(1)["name"], h2.row(1)["qty"]) == ("src1", 1)


def test_replaying_a_batch_does_not_park_or_hold_twice(tmp_path):
    h = parked_setup(tmp_path)
    _, _, second = later_changes(h)
    again = batch(
        [
            {"id": 1, "name": "src1", "qty": 1, "updated_at": t(20)},
            {"id": 2, "name": "flows", "qty": 2, "updated_at": t(20)},
        ],
        ["u", "u"],
        10,
    )
    asyncio.run(h.resolver.resolve(SPEC, again))  # decided again, not yet applied
    h.run(second)
    [conflict] = h.state.list_conflicts("p")
    assert len(h.state.held_changes(conflict.id)) == 2
    assert h.state.db.execute("SELECT COUNT(*) FROM conflicts").fetchone()[0] == 1
