"""The order a group's writes take for the target's foreign keys (targets/postgres/fkorder.py)."""

from __future__ import annotations

import pyarrow as pa

from syncengine.changes import ChangeBatch
from syncengine.targets.base import ServerFence, ShadowUpdate, TableSpec, TableWrite
from syncengine.targets.postgres.fkorder import ordered

SCHEMA = pa.schema([("id", pa.int64()), ("v", pa.string())])


def write(name: str, ops: list[str], fenced: bool = False) -> TableWrite:
    n = len(ops)
    data = pa.table({"id": list(range(n)), "v": ["x"] * n}, schema=SCHEMA)
    batch = ChangeBatch.build(
        name, data, ops=ops, positions=[f"{i:04d}" for i in range(n)], key=["id"]
    )
    keys = pa.array([f'{{"id":{i}}}' for i in range(n)])
    shadow = ShadowUpdate(fence=ServerFence(keys, enforce=True)) if fenced else ShadowUpdate()
    return TableWrite(TableSpec(name, ("id",), SCHEMA), batch, shadow)


def described(plan: list[tuple[int, TableWrite]]) -> list[tuple[int, str, list[str]]]:
    return [(i, w.spec.name, w.batch.ops.to_pylist()) for i, w in plan]


def test_without_keys_between_them_the_writes_stay_as_they_are() -> None:
    writes = [write("items", ["d", "c"]), write("orders", ["d", "c"])]
    assert described(ordered(writes, frozenset())) == [
        (0, "items", ["d", "c"]), (1, "orders", ["d", "c"])
    ]  # fmt: skip


def test_inserts_and_updates_go_parents_first_then_deletes_children_first() -> None:
    writes = [write("notes", ["d", "u"]), write("items", ["c", "d"]), write("orders", ["d", "c"]),
              write("other", ["u"])]  # fmt: skip
    edges = frozenset({("notes", "items"), ("items", "orders")})
    assert described(ordered(writes, edges)) == [
        (2, "orders", ["c"]), (1, "items", ["c"]), (0, "notes", ["u"]),
        (0, "notes", ["d"]), (1, "items", ["d"]), (2, "orders", ["d"]),
        (3, "other", ["u"]),
    ]  # fmt: skip


def test_each_part_carries_its_own_keys_fence_rows_and_a_cycle_keeps_the_order() -> None:
    writes = [write("a", ["d", "c", "d"], fenced=True), write("b", ["u"])]
    plan = ordered(writes, frozenset({("a", "b")}))
    parts = {tuple(w.batch.ops.to_pylist()): w for _, w in plan if w.spec.name == "a"}
    fence = parts[("c",)].shadow.fence
    assert fence is not None and fence.row_keys.to_pylist() == ['{"id":1}']
    assert parts[("d", "d")].shadow.fence.row_keys.to_pylist() == ['{"id":0}', '{"id":2}']
    cycle = frozenset({("a", "b"), ("b", "a")})
    assert [name for _, name, _ in described(ordered(writes, cycle))][:2] == ["a", "b"]
