"""The conflict step on an in-memory target: detection, echoes, strategies, queue, shadow."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pyarrow as pa
import pytest

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


def batch(rows: list[dict], ops: list[str], start: int = 1, unsent: dict | None = None) -> ChangeBatch:
    positions = [f"{start + i:016X}" for i in range(len(rows))]
    table = pa.Table.from_pylist(rows, schema=pa.schema([SPEC.schema.field(k) for k in rows[0]]))
    return ChangeBatch.build(
        "items", table, ops=ops, positions=positions, ts=[t(30)] * len(rows), key=["id"],
        unsent=unsent,
    )  # fmt: skip


def key(i: int) -> str:
    return f'{{"id":{i}}}'


class Harness:
    def __init__(self, tmp_path, strategy: str = "remote", **conf) -> None:
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
        rows = [
            {"id": i, "name": f"n{i}", "qty": i, "updated_at": t(10)} for i in range(1, 6)
        ]
        resolved = self.run(batch(rows, ["r"] * 5))
        assert resolved.conflicts == 0


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


@pytest.mark.parametrize(
    ("strategy", "expected_name", "outcome"),
    [("remote", "src", "remote"), ("local", "hand", "local"), ("merge", "hand", "merged")],
)
def test_conflict_under_each_strategy(tmp_path, strategy, expected_name, outcome):
    h = Harness(tmp_path, strategy)
    h.seed()
    h.target.edit("items", key(1), name="hand")
    r = h.run(
        batch(
            [
                {"id": 1, "name": "n1" if strategy == "merge" else "src", "qty": 100, "updated_at": t(20)},
                {"id": 4, "name": "clean", "qty": 4, "updated_at": t(20)},
            ],
            ["u", "u"],
            10,
        )
    )
    assert r.conflicts == 1 and r.outcomes == {outcome: 1}
    assert h.row(1)["name"] == expected_name
    assert h.row(1)["qty"] == (2 - 1 if strategy == "local" else 100) or strategy == "local"
    assert h.row(4)["name"] == "clean"
    audit = h.state.db.execute("SELECT row_key, strategy, outcome FROM audit").fetchall()
    assert audit == [(key(1), strategy, outcome)]
