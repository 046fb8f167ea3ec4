"""The conformance suite every target passes (Postgres, Mongo with and without transactions,
Parquet). States are read back independently of the target's own read code (conftest)."""

from __future__ import annotations

import uuid
from typing import Any

import pyarrow as pa
import pytest

from syncengine.changes import concat_batches
from syncengine.targets.base import Checkpoint, ShadowUpdate, TableSpec, TableWrite
from syncengine.targets.faults import ENV, SimulatedCrash
from tests.integration.targets.conftest import Harness, log_positions, make_batch, run

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("name", pa.string()),
        ("qty", pa.int64()),
        ("note", pa.string()),
        ("customer.email", pa.string()),
    ]
)
SPEC = TableSpec("items", ("id",), SCHEMA)


def row(i: int, **over: Any) -> dict[str, Any]:
    base = {
        "id": i,
        "name": f"n{i}",
        "qty": i * 10,
        "note": f"long note {i}",
        "customer.email": f"c{i}@x",
    }
    return {**base, **over}


B1 = make_batch(
    "items",
    ("id",),
    [row(i) for i in (1, 2, 3, 4)],
    SCHEMA,
    ["c"] * 4,
    ["0001", "0002", "0003", "0004"],
)
B2 = make_batch(
    "items",
    ("id",),
    [row(1, name="one", note=None), row(2), row(5)],
    SCHEMA,
    ["u", "d", "c"],
    ["0005", "0006", "0007"],
    unsent={"note": [True, False, False]},
)
B3 = make_batch(
    "items", ("id",), [row(3, qty=333), row(6)], SCHEMA, ["u", "c"], ["0008", "0009"], day=2
)
EXPECTED_1 = {(i,): row(i) for i in (1, 2, 3, 4)}
EXPECTED_3 = {
    (1,): row(1, name="one"),
    (3,): row(3, qty=333),
    (4,): row(4),
    (5,): row(5),
    (6,): row(6),
}


def norm(state: dict, spec: TableSpec) -> dict:
    return {k: {c: r.get(c) for c in spec.schema.names} for k, r in state.items()}


def shadow(keys: list[str], hashes: list[str]) -> ShadowUpdate:
    table = pa.table(
        {"row_key": keys, "row_hash": hashes, "base": [None] * len(keys)},
        schema=pa.schema(
            [("row_key", pa.string()), ("row_hash", pa.string()), ("base", pa.string())]
        ),
    )
    return ShadowUpdate(upserts=table)


def test_shadow_positions_and_tombstones_round_trip(harness: Harness) -> None:
    """The position fence's state: each shadow row's source position, and a deleted key's
    tombstone (null hash, the delete's position) instead of no row."""

    async def scenario() -> None:
        async with harness.target() as t:
            spec = await t.ensure_table(SPEC)
            upserts = pa.table(
                {
                    "row_key": ["[1]", "[2]"],
                    "row_hash": ["h1", None],
                    "base": ['{"id":1}', None],
                    "position": ["0000000A.00000001", "0000000B.00000000"],
                }
            )
            await t.apply([TableWrite(spec, B1, ShadowUpdate(upserts=upserts))], None)
            found = await t.read_shadow("items", ["[1]", "[2]", "[3]"])
            assert sorted(found.to_pylist(), key=lambda r: r["row_key"]) == [
                {"row_key": "[1]", "row_hash": "h1", "base": '{"id":1}',
                 "position": "0000000A.00000001"},
                {"row_key": "[2]", "row_hash": None, "base": None,
                 "position": "0000000B.00000000"},
            ]  # fmt: skip

    run(scenario())


def test_shadow_rows_marked_fresh_that_exist_are_upserted(harness: Harness) -> None:
    """``fresh`` (no shadow row at detection) is a hint: a key that has a row after all (a
    retried batch) is updated, never duplicated or refused."""

    async def scenario() -> None:
        async with harness.target() as t:
            spec = await t.ensure_table(SPEC)
            await t.apply([TableWrite(spec, B1, shadow(["[1]"], ["h1"]))], None)
            upserts = pa.table(
                {
                    "row_key": ["[1]", "[2]"],
                    "row_hash": ["h1b", "h2"],
                    "base": [None, None],
                    "position": ["0002", "0002"],
                    "fresh": [True, True],
                }
            )
            await t.apply([TableWrite(spec, B1, ShadowUpdate(upserts=upserts))], None)
            found = await t.read_shadow("items", ["[1]", "[2]"])
            assert sorted(found.select(["row_key", "row_hash"]).to_pylist(), key=str) == [
                {"row_key": "[1]", "row_hash": "h1b"},
                {"row_key": "[2]", "row_hash": "h2"},
            ]

    run(scenario())


def fault_name(h: Harness) -> str:
    return f"{h.kind.split('_')[0]}.after_data"


def test_same_batch_twice_changes_nothing(harness: Harness) -> None:
    async def scenario() -> None:
        async with harness.target() as t:
            spec = await t.ensure_table(SPEC)
            await t.apply([TableWrite(spec, B1)], Checkpoint("s", "0004"))
            first = norm(harness.state(SPEC), SPEC)
            files = sorted(harness.root.rglob("*")) if harness.root else None
            await t.apply([TableWrite(spec, B1)], Checkpoint("s", "0004"))
            assert norm(harness.state(SPEC), SPEC) == first == EXPECTED_1
            if harness.root:
                assert sorted(harness.root.rglob("*")) == files
                assert sorted(log_positions(harness.root, "items")) == [
                    "0001",
                    "0002",
                    "0003",
                    "0004",
                ]
            assert await t.get_checkpoint("s") == "0004"

    run(scenario())


def test_crash_between_data_and_checkpoint_then_resume(harness: Harness, monkeypatch) -> None:
    async def scenario() -> None:
        async with harness.target() as t:
            spec = await t.ensure_table(SPEC)
            await t.apply([TableWrite(spec, B1)], Checkpoint("s", "0004"))
        monkeypatch.setenv(ENV, fault_name(harness))
        async with harness.target() as t:
            with pytest.raises(SimulatedCrash):
                await t.apply([TableWrite(spec, concat_batches([B2, B3]))], Checkpoint("s", "0009"))
        monkeypatch.delenv(ENV)
        async with harness.target() as t:
            assert await t.get_checkpoint("s") == "0004"
            if t.keeps_state:  # data and checkpoint commit together: nothing of the batch shows
                assert norm(harness.state(SPEC), SPEC) == EXPECTED_1
            # resume from the checkpoint, with the changes cut into different batches
            await t.apply([TableWrite(spec, B2)], Checkpoint("s", "0007"))
            await t.apply([TableWrite(spec, B3)], Checkpoint("s", "0009"))
            assert await t.get_checkpoint("s") == "0009"
        assert norm(harness.state(SPEC), SPEC) == EXPECTED_3
        if harness.root:
            positions = log_positions(harness.root, "items")
            assert sorted(positions) == [f"{i:04d}" for i in range(1, 10)]  # no loss, no duplicate

    run(scenario())


def test_deletes_of_missing_rows(harness: Harness) -> None:
    async def scenario() -> None:
        async with harness.target() as t:
            spec = await t.ensure_table(SPEC)
            await t.apply([TableWrite(spec, B1)], None)
            deletes = make_batch(
                "items",
                ("id",),
                [{"id": 2}, {"id": 77}, {"id": 78}],
                SCHEMA,
                ["d"] * 3,
                ["0010", "0011", "0012"],
            )
            result = await t.apply([TableWrite(spec, deletes)], Checkpoint("s", "0012"))
            assert result.rejected == []
        assert norm(harness.state(SPEC), SPEC) == {k: v for k, v in EXPECTED_1.items() if k != (2,)}

    run(scenario())


def test_unsent_columns_keep_their_values(harness: Harness) -> None:
    async def scenario() -> None:
        async with harness.target() as t:
            spec = await t.ensure_table(SPEC)
            await t.apply([TableWrite(spec, B1)], None)
            partial = make_batch(
                "items",
                ("id",),
                [
                    row(1, name="x", note=None),
                    row(3, qty=None, note="new"),
                    row(9, note=None, qty=None),
                ],
                SCHEMA,
                ["u", "u", "u"],
                ["0010", "0011", "0012"],
                unsent={"note": [True, False, True], "qty": [False, True, True]},
            )
            await t.apply([TableWrite(spec, partial)], None)
        expected = {
            **EXPECTED_1,
            (1,): row(1, name="x"),
            (3,): row(3, note="new"),
            (9,): row(9, qty=None, note=None),  # an update of a missing row creates it
        }
        assert norm(harness.state(SPEC), SPEC) == expected

    run(scenario())


def test_schema_growth_adds_the_new_column(harness: Harness) -> None:
    grown = SCHEMA.append(pa.field("color", pa.string()))
    grown_spec = TableSpec("items", ("id",), grown)

    async def scenario() -> None:
        async with harness.target() as t:
            spec = await t.ensure_table(SPEC)
            await t.apply([TableWrite(spec, B1)], None)
            spec2 = await t.ensure_table(grown_spec)
            assert "color" in spec2.schema.names
            batch = make_batch(
                "items",
                ("id",),
                [row(7, color="red"), row(1, color="blue")],
                grown,
                ["c", "u"],
                ["0010", "0011"],
            )
            await t.apply([TableWrite(spec2, batch)], None)
        expected = {k: {**v, "color": None} for k, v in EXPECTED_1.items()}
        expected[(7,)] = row(7, color="red")
        expected[(1,)] = row(1, color="blue")
        assert norm(harness.state(grown_spec), grown_spec) == expected

    run(scenario())


def test_truncate_then_inserts(harness: Harness) -> None:
    async def scenario() -> None:
        async with harness.target() as t:
            spec = await t.ensure_table(SPEC)
            await t.apply([TableWrite(spec, B1, shadow(["[1]", "[2]"], ["a", "b"]))], None)
            batch = make_batch(
                "items", ("id",), [{"id": None}, row(8)], SCHEMA, ["t", "c"], ["0010", "0011"]
            ).compact()
            result = await t.apply([TableWrite(spec, batch, shadow(["[8]"], ["h"]))], None)
            assert result.truncated == 1
            found = await t.read_shadow("items", ["[1]", "[2]", "[8]"])
            assert found.column("row_key").to_pylist() == ["[8]"]  # a truncate clears the shadow
        assert norm(harness.state(SPEC), SPEC) == {(8,): row(8)}

    run(scenario())


def test_shadow_rows_round_trip(harness: Harness) -> None:
    async def scenario() -> None:
        async with harness.target() as t:
            spec = await t.ensure_table(SPEC)
            await t.apply(
                [TableWrite(spec, B1, shadow(["[1]", "[2]"], ["h1", "h2"]))],
                Checkpoint("s", "0004"),
            )
            deletes = make_batch("items", ("id",), [{"id": 1}], SCHEMA, ["d"], ["0005"])
            update = ShadowUpdate(upserts=shadow(["[2]"], ["h2b"]).upserts, deletes=["[1]"])
            await t.apply([TableWrite(spec, deletes, update)], Checkpoint("s", "0005"))
            found = await t.read_shadow("items", ["[1]", "[2]", "[3]"])
            assert found.select(["row_key", "row_hash", "base"]).to_pylist() == [
                {"row_key": "[2]", "row_hash": "h2b", "base": None}
            ]
            assert await t.get_checkpoint("s") == "0005"
            assert await t.get_checkpoint("other") is None
            # checkpoint-only apply (the runtime's idle heartbeat)
            await t.apply([], Checkpoint("s", "0006"))
            assert await t.get_checkpoint("s") == "0006"

    run(scenario())


KEY_CASES = {
    "int32": (pa.schema([("k", pa.int32()), ("v", pa.string())]), ("k",), [1, 2, 3]),
    "bigint": (pa.schema([("k", pa.int64()), ("v", pa.string())]), ("k",), [2**40, -(2**50), 7]),
    "text": (pa.schema([("k", pa.string()), ("v", pa.string())]), ("k",), ["a", "ü ß", ""]),
    "uuid": (
        pa.schema([pa.field("k", pa.string(), metadata={"pg_type": "uuid"}), ("v", pa.string())]),
        ("k",),
        [str(uuid.uuid4()) for _ in range(3)],
    ),
    "composite": (
        pa.schema([("region", pa.string()), ("num", pa.int64()), ("v", pa.string())]),
        ("region", "num"),
        [("eu", 1), ("eu", 2), ("us", 1)],
    ),
    "objectid": (
        pa.schema(
            [pa.field("_id", pa.string(), metadata={"bson_type": "objectId"}), ("v", pa.string())]
        ),
        ("_id",),
        ["65a1b2c3d4e5f6a7b8c9d0e1", "65a1b2c3d4e5f6a7b8c9d0e2", "65a1b2c3d4e5f6a7b8c9d0e3"],
    ),
}


@pytest.mark.parametrize("case", list(KEY_CASES))
def test_keys_of_every_type(harness: Harness, case: str) -> None:
    schema, key, values = KEY_CASES[case]
    if case == "objectid" and not harness.kind.startswith("mongo"):
        pytest.skip("ObjectId keys are a Mongo type")
    spec = TableSpec(f"keys_{case}", key, schema)

    def rec(value: Any, v: str) -> dict[str, Any]:
        parts = value if isinstance(value, tuple) else (value,)
        return {**dict(zip(key, parts, strict=True)), "v": v}

    async def scenario() -> None:
        async with harness.target() as t:
            spec2 = await t.ensure_table(spec)
            inserts = make_batch(
                spec.name, key, [rec(x, "a") for x in values], schema, ["c"] * 3, ["01", "02", "03"]
            )
            await t.apply([TableWrite(spec2, inserts)], None)
            changes = make_batch(
                spec.name,
                key,
                [rec(values[0], "b"), rec(values[1], "x")],
                schema,
                ["u", "d"],
                ["04", "05"],
            )
            await t.apply([TableWrite(spec2, changes)], None)
            keys = pa.Table.from_pylist([rec(x, "") for x in values], schema=schema).select(
                list(key)
            )
            found = await t.read_rows(spec2, keys)
            got = sorted(found.to_pylist(), key=lambda r: r["v"]) if found.num_rows else []
            if harness.kind == "parquet":
                assert got == []  # a log has no current rows (documented)
            else:
                assert got == [rec(values[2], "a"), rec(values[0], "b")]
        expected = {tuple(r[k] for k in key): r for r in (rec(values[0], "b"), rec(values[2], "a"))}
        assert norm(harness.state(spec), spec) == expected

    run(scenario())


def test_scan_returns_the_state(harness: Harness) -> None:
    async def scenario() -> None:
        async with harness.target() as t:
            spec = await t.ensure_table(SPEC)
            for batch in (B1, B2, B3):
                await t.apply([TableWrite(spec, batch)], None)
            chunks = [chunk async for chunk in t.scan(spec)]
        rows = [r for chunk in chunks for r in chunk.to_pylist()]
        assert {(r["id"],): r for r in rows} == EXPECTED_3

    run(scenario())


def test_reset_checkpoint_where_the_target_keeps_it(harness: Harness) -> None:
    async def scenario() -> None:
        async with harness.target() as t:
            await t.apply([], Checkpoint("s", "0042"))
            await t.reset_checkpoint("s")
            expected = None if t.keeps_state else "0042"  # the SQLite copy is the caller's
            assert await t.get_checkpoint("s") == expected
            assert t.change_log == (harness.kind == "parquet")

    run(scenario())
