"""The conflict step on an in-memory target: detection, echoes, strategies, queue, shadow."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pyarrow as pa

from syncengine.changes import ChangeBatch
from syncengine.config.models import ConflictsConfig
from syncengine.conflicts import ConflictResolver
from syncengine.state import SQLiteStateStore
from syncengine.targets.base import Checkpoint, TableSpec
from tests.unit.strategies.conflicts_memtarget import MemoryTarget

SPEC = TableSpec(
    "items",
    ("id",),
    pa.schema(
        [
            pa.field("id", pa.int64()),
            pa.field("name", pa.string()),
            pa.field("qty", pa.int64()),
            pa.field("updated_at", pa.timestamp("us", tz="UTC")),
        ]
    ),
)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def t(minute: int) -> datetime:
    return T0.replace(minute=minute)


def batch(
    rows: list[dict], ops: list[str], start: int = 1, unsent: dict | None = None
) -> ChangeBatch:
    positions = [f"{start + i:016X}" for i in range(len(rows))]
    table = pa.Table.from_pylist(rows, schema=pa.schema([SPEC.schema.field(k) for k in rows[0]]))
    return ChangeBatch.build(
        "items", table, ops=ops, positions=positions, ts=[t(30)] * len(rows), key=["id"],
        unsent=unsent,
    )  # fmt: skip


def key(i: int) -> str:
    return f'{{"id":{i}}}'


class Harness:
    """``remote`` here audits (detects) unless told ``audit=False``: these tests are about
    detection; tests/unit/strategies/test_strategies_fence.py covers ``remote`` without it."""

    def __init__(self, tmp_path, strategy: str = "remote", **conf) -> None:
        conf.setdefault("audit", True)
        self.target = MemoryTarget()
        self.state = SQLiteStateStore(tmp_path / "state.db")
        self.resolver = ConflictResolver(
            "p", self.target, self.state, ConflictsConfig(strategy=strategy, **conf)
        )

    def run(self, b: ChangeBatch):
        async def go():
            resolved = await self.resolver.resolve(SPEC, b)
            await self.target.apply([resolved.write], Checkpoint("s", b.last_position or ""))
            return resolved

        return asyncio.run(go())

    def row(self, i: int) -> dict | None:
        return self.target.rows["items"].get(key(i))

    def seed(self) -> None:
        rows = [{"id": i, "name": f"n{i}", "qty": i, "updated_at": t(10)} for i in range(1, 6)]
        resolved = self.run(batch(rows, ["r"] * 5))
        assert resolved.conflicts == 0
        logged = getattr(self.target, "change_log", False)
        assert len(self.target.shadow["items"]) == (0 if logged else 5)


def test_clean_changes_pass_and_shadow_follows(tmp_path):
    h = Harness(tmp_path)
    h.seed()
    assert h.row(3)["name"] == "n3"
    assert len(h.target.shadow["items"]) == 5
    r = h.run(batch([{"id": 3, "name": "x", "qty": 3, "updated_at": t(20)}], ["u"], 10))
    assert (r.conflicts, r.echoes) == (0, 0)
    assert h.row(3)["name"] == "x"


def test_echo_is_skipped(tmp_path):
    h = Harness(tmp_path)
    h.seed()
    h.target.edit("items", key(2), name="same")
    r = h.run(batch([{"id": 2, "name": "same", "qty": 2, "updated_at": t(10)}], ["u"], 10))
    assert (r.conflicts, r.echoes) == (0, 1)
    assert r.write.batch.num_rows == 0


def test_conflict_under_each_strategy(tmp_path):
    """One hand edit (name) and one incoming change (qty) to the same row, per strategy."""
    expected = {
        "remote": ("n1", 100, {"remote": 1}),
        "local": ("hand", 1, {"local": 1}),
        "merge": ("hand", 100, {"merged": 1}),
        "timestamp": ("n1", 100, {"remote": 1}),
    }
    for strategy, (name, qty, outcomes) in expected.items():
        h = Harness(tmp_path / strategy, strategy, timestamp="updated_at")
        h.seed()
        h.target.edit("items", key(1), name="hand", updated_at=t(15))
        change = {"id": 1, "name": "n1", "qty": 100, "updated_at": t(20)}
        clean = {"id": 4, "name": "clean", "qty": 4, "updated_at": t(20)}
        r = h.run(batch([change, clean], ["u", "u"], 10))
        assert (r.conflicts, r.outcomes) == (1, outcomes), strategy
        assert (h.row(1)["name"], h.row(1)["qty"]) == (name, qty), strategy
        assert h.row(4)["name"] == "clean"
        audit = h.state.db.execute("SELECT row_key, strategy, outcome, decided_by FROM audit")
        outcome = next(iter(outcomes))
        assert audit.fetchall() == [(key(1), strategy, outcome, f"strategy:{strategy}")]


def test_timestamp_newer_target_wins_and_ties_follow_tie(tmp_path):
    for tie, winner in (("remote", "src"), ("local", "hand")):
        h = Harness(tmp_path / tie, "timestamp", timestamp="updated_at", tie=tie)
        h.seed()
        h.target.edit("items", key(1), name="hand", updated_at=t(40))
        h.target.edit("items", key(2), name="hand", updated_at=t(20))
        r = h.run(
            batch(
                [
                    {"id": 1, "name": "src", "qty": 1, "updated_at": t(20)},
                    {"id": 2, "name": "src", "qty": 2, "updated_at": t(20)},
                ],
                ["u", "u"],
                10,
            )
        )
        assert r.conflicts == 2
        assert h.row(1)["name"] == "hand"  # the target is newer
        assert h.row(2)["name"] == winner  # same time: the tie rule


def test_local_delete_and_conflict_on_insert(tmp_path):
    h = Harness(tmp_path, "remote")
    h.seed()
    h.target.remove("items", key(2))  # deleted by hand
    h.target.put("items", key(9), {"id": 9, "name": "foreign", "qty": 0, "updated_at": t(1)})
    r = h.run(
        batch(
            [
                {"id": 2, "name": "again", "qty": 2, "updated_at": t(20)},
                {"id": 9, "name": "ours", "qty": 9, "updated_at": t(20)},
                {"id": 7, "name": "new", "qty": 7, "updated_at": t(20)},
            ],
            ["u", "c", "c"],
            10,
        )
    )
    assert r.conflicts == 2  # key 7: absent in target and shadow, not a conflict
    assert h.row(2)["name"] == "again" and h.row(9)["name"] == "ours" and h.row(7)["name"] == "new"


def test_local_strategy_keeps_target_edits_for_later_changes(tmp_path):
    h = Harness(tmp_path, "local")
    h.seed()
    h.target.edit("items", key(1), name="hand")
    h.run(batch([{"id": 1, "name": "src", "qty": 1, "updated_at": t(20)}], ["u"], 10))
    r = h.run(batch([{"id": 1, "name": "src2", "qty": 1, "updated_at": t(21)}], ["u"], 20))
    assert r.conflicts == 1 and h.row(1)["name"] == "hand"


def test_merge_keeps_target_edit_across_later_full_row_changes(tmp_path):
    h = Harness(tmp_path, "merge")
    h.seed()
    h.target.edit("items", key(1), name="hand")
    h.run(batch([{"id": 1, "name": "n1", "qty": 10, "updated_at": t(20)}], ["u"], 10))
    h.run(batch([{"id": 1, "name": "n1", "qty": 11, "updated_at": t(21)}], ["u"], 20))
    assert (h.row(1)["name"], h.row(1)["qty"]) == ("hand", 11)
    h.run(batch([{"id": 1, "name": "renamed", "qty": 11, "updated_at": t(22)}], ["u"], 30))
    assert h.row(1)["name"] == "renamed"  # both changed name: tie → remote


def test_unsent_columns_keep_the_target_value(tmp_path):
    h = Harness(tmp_path, "remote")
    h.seed()
    change = {"id": 3, "name": None, "qty": 30, "updated_at": t(20)}
    r = h.run(batch([change], ["u"], 10, unsent={"name": [True]}))
    assert r.conflicts == 0 and h.row(3)["name"] == "n3" and h.row(3)["qty"] == 30


def test_remote_delete_of_an_edited_row(tmp_path):
    for strategy, survives in (("remote", False), ("local", True), ("merge", False)):
        h = Harness(tmp_path / strategy, strategy)
        h.seed()
        h.target.edit("items", key(5), name="hand")
        r = h.run(batch([{"id": 5}], ["d"], 10))
        assert r.conflicts == 1
        assert (h.row(5) is not None) == survives, strategy


def test_per_mapping_override_and_pending_keys_wait_under_any_strategy(tmp_path):
    h = Harness(tmp_path, "remote")
    h.resolver.overrides["items"] = ConflictsConfig(strategy="manual")
    h.seed()
    h.target.edit("items", key(1), name="hand")
    r = h.run(batch([{"id": 1, "name": "src", "qty": 1, "updated_at": t(20)}], ["u"], 10))
    assert (r.strategy, r.parked) == ("manual", 1)
    # the override is removed: the parked key still waits, others use the pipeline's strategy
    h.resolver.overrides.clear()
    h.target.edit("items", key(2), name="hand")
    r = h.run(
        batch(
            [
                {"id": 1, "name": "src2", "qty": 1, "updated_at": t(21)},
                {"id": 2, "name": "src", "qty": 2, "updated_at": t(21)},
            ],
            ["u", "u"],
            20,
        )
    )
    assert (r.strategy, r.held, r.outcomes) == ("remote", 1, {"remote": 1})
    assert h.row(1)["name"] == "hand" and h.row(2)["name"] == "src"


def test_truncate_then_rows_apply_without_reads(tmp_path):
    h = Harness(tmp_path, "manual")
    h.seed()
    h.target.edit("items", key(1), name="hand")
    rows = [
        {"id": 0, "name": None, "qty": None, "updated_at": None},
        {"id": 1, "name": "fresh", "qty": 1, "updated_at": t(20)},
    ]
    r = h.run(batch(rows, ["t", "c"], 10))
    assert r.conflicts == 0
    assert list(h.target.rows["items"]) == [key(1)] and h.row(1)["name"] == "fresh"


def test_change_log_targets_pass_everything_without_shadow(tmp_path):
    h = Harness(tmp_path, "manual")
    h.target.change_log = True  # like the Parquet target
    h.seed()
    r = h.run(batch([{"id": 1, "name": "again", "qty": 1, "updated_at": t(20)}], ["u"], 10))
    assert (r.conflicts, r.parked, r.write.batch.num_rows) == (0, 0, 1)
    assert h.target.shadow["items"] == {}
