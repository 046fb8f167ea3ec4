"""Mongo operations, the Parquet log replay and fault points, without a server."""

from __future__ import annotations

import pyarrow as pa
import pytest
from bson import ObjectId
from pymongo import DeleteOne, ReplaceOne, UpdateOne

from syncengine.changes import ChangeBatch
from syncengine.targets.base import TableSpec
from syncengine.targets.faults import ENV, SimulatedCrash, fault_point
from syncengine.targets.mongo.ops import build_ops, doc_id, documents_to_rows, nest
from syncengine.targets.parquet.target import _name_part, replay_log


def test_id_rules_and_nesting() -> None:
    assert doc_id(("_id",), {"_id": 5}) == 5
    assert doc_id(("k",), {"k": "a", "v": 1}) == "a"
    assert doc_id(("a", "b"), {"b": 2, "a": 1}) == {"a": 1, "b": 2}
    assert nest({"x": 1, "c.e": 2, "c.f.g": 3}) == {"x": 1, "c": {"e": 2, "f": {"g": 3}}}


def test_operations_per_op_with_unsent_fields_left_alone() -> None:
    oid = "65a1b2c3d4e5f6a7b8c9d0e1"
    schema = pa.schema(
        [
            pa.field("_id", pa.string(), metadata={"bson_type": "objectId"}),
            ("c.e", pa.string()),
            ("n", pa.int64()),
        ]
    )
    spec = TableSpec("t", ("_id",), schema)
    rows = pa.Table.from_pylist(
        [{"_id": oid, "c.e": "x", "n": 1}] * 3 + [{"_id": None}], schema=schema
    )
    batch = ChangeBatch.build(
        "t",
        rows,
        ops=["c", "u", "d", "t"],
        positions=list("1234"),
        key=["_id"],
        unsent={"n": [False, True, False, False]},
    )
    truncate, ops, index = build_ops(spec, batch.data)
    assert truncate and index == [0, 1, 2]
    assert ops[0] == ReplaceOne(
        {"_id": ObjectId(oid)}, {"_id": ObjectId(oid), "c": {"e": "x"}, "n": 1}, upsert=True
    )
    assert ops[1] == UpdateOne({"_id": ObjectId(oid)}, {"$set": {"c.e": "x"}}, upsert=True)
    assert ops[2] == DeleteOne({"_id": ObjectId(oid)})


def test_documents_read_back_as_spec_columns() -> None:
    schema = pa.schema([pa.field("k", pa.int64()), ("c.e", pa.string()), ("missing", pa.float64())])
    spec = TableSpec("t", ("k",), schema)
    table = documents_to_rows(spec, [{"_id": 1, "k": 1, "c": {"e": "x"}}, {"_id": 2, "k": 2}])
    assert table.schema == schema
    assert table.to_pylist() == [
        {"k": 1, "c.e": "x", "missing": None},
        {"k": 2, "c.e": None, "missing": None},
    ]


def test_file_name_parts_are_safe_and_deterministic() -> None:
    assert _name_part("000000000016B3F8.0000000A") == "000000000016B3F8.0000000A"
    long = "82" + "AB" * 80
    assert _name_part(long) == _name_part(long) and len(_name_part(long)) < 100
    assert "/" not in _name_part("a/b") and _name_part("a/b") != _name_part("a_b")


def test_replay_log_applies_changes_in_order() -> None:
    schema = pa.schema([("id", pa.int64()), ("v", pa.string()), ("w", pa.string())])
    spec = TableSpec("t", ("id",), schema)
    rows = pa.Table.from_pylist(
        [
            {"id": 1, "v": "a", "w": "keep"},
            {"id": 2, "v": "b", "w": "b"},
            {"id": None},
            {"id": 3, "v": "c", "w": "c"},
            {"id": 3, "v": "c2", "w": None},
            {"id": 4, "v": "d", "w": "d"},
            {"id": 4},
        ],
        schema=schema,
    )
    log = ChangeBatch.build(
        "t",
        rows,
        ops=["c", "c", "t", "c", "u", "c", "d"],
        positions=list("1234567"),
        key=["id"],
        unsent={"w": [False, False, False, False, True, False, False]},
    ).data
    assert replay_log(log, spec).to_pylist() == [{"id": 3, "v": "c2", "w": "c"}]


def test_fault_point_fires_only_when_armed(monkeypatch: pytest.MonkeyPatch) -> None:
    fault_point("x.after_data")
    monkeypatch.setenv(ENV, "x.before_commit")
    fault_point("x.after_data")
    with pytest.raises(SimulatedCrash):
        fault_point("x.before_commit")


def test_make_target_builds_each_kind_from_its_config(tmp_path) -> None:
    from syncengine.config.models import (
        MongoTargetConfig,
        ParquetTargetConfig,
        PostgresTargetConfig,
    )
    from syncengine.state.sqlite import SQLiteStateStore
    from syncengine.targets import make_target
    from syncengine.targets.mongo import MongoTarget
    from syncengine.targets.parquet import ParquetTarget
    from syncengine.targets.postgres import PostgresTarget

    state = SQLiteStateStore(tmp_path / "s.db")
    configs = {
        PostgresTarget: PostgresTargetConfig(type="postgres", dsn="postgresql://h/db"),
        MongoTarget: MongoTargetConfig(type="mongo", uri="mongodb://h", database="d"),
        ParquetTarget: ParquetTargetConfig(type="parquet", path=str(tmp_path / "lake")),
    }
    for cls, config in configs.items():
        target = make_target("p", config, state)
        assert isinstance(target, cls) and target.pipeline == "p"
    assert make_target("p", configs[PostgresTarget], state).keeps_state
    assert not make_target("p", configs[ParquetTarget], state).keeps_state
