"""Which columns take a Mongo field as JSON: typed values headed for a ``jsonb`` column are
carried as JSON (``runtime/jsonfields``); values that leave the column's type family, or are
carried as JSON, make it ``jsonb`` (``jsonpromote``)."""

from __future__ import annotations

import pyarrow as pa

from syncengine.changes import ChangeBatch
from syncengine.runtime.jsonfields import typed_as_json
from syncengine.targets.base import TableSpec
from syncengine.targets.postgres.jsonpromote import wanted


def _field(name: str, bson_type: str | None, type_: pa.DataType | None = None) -> pa.Field:
    meta = None if bson_type is None else {"bson_type": bson_type}
    return pa.field(name, type_ or pa.string(), metadata=meta)


def test_wanted_when_the_field_leaves_the_columns_family():
    cases = [
        ("string", "integer", True),
        ("string", "boolean", True),
        ("string", "text", False),
        ("string", "uuid", False),  # a type chosen for strings: the server parses them
        ("string", "timestamp with time zone", False),
        ("objectId", "character varying(24)", False),
        ("int", "text", True),  # an int group reads the column's values as ints
        ("long", "numeric(20,0)", False),
        ("double", "bigint", False),  # exact.py's: a number column stays one
        ("bool", "integer", True),
        ("date", "timestamp with time zone", False),
        ("date", "text", True),
        ("uuid", "text", False),
        ("object", "text", True),
        ("array", "integer[]", False),
        ("json", "text", True),  # carried as JSON: as the table its group creates
        ("json", "bigint", True),
        ("json", "jsonb", False),
        ("string", "citext", False),  # a type the user chose: left alone
        ("null", "integer", False),
    ]
    for bson_type, column, expected in cases:
        assert wanted(_field("f", bson_type), column) is expected, (bson_type, column)
    assert not wanted(_field("f", None), "integer")  # not a Mongo field
    # arrays: by their items (a mapped list keeps no item metadata: its Arrow type says)
    assert wanted(_field("f", "array", pa.large_list(pa.large_string())), "integer[]")
    assert not wanted(_field("f", "array", pa.list_(pa.int64())), "integer[]")
    assert not wanted(_field("f", "array", pa.list_(pa.string())), "text[]")
    assert wanted(_field("f", "array", pa.list_(pa.bool_())), "text")


class _Columns:
    """What ``typed_as_json`` asks a target: which columns of a table hold JSON."""

    def __init__(self, holding: set[str]) -> None:
        self.holding = frozenset(holding)

    def json_columns(self, table: str) -> frozenset[str]:
        return self.holding


def test_typed_fields_headed_for_json_columns_are_carried_as_json():
    spec = pa.schema(
        [
            _field("_id", "string"),
            _field("n", "int", pa.int32()),
            _field("name", "string"),
            _field("j", "json"),
        ]
    )
    data = pa.table(  # mapped columns: no metadata of their own
        {
            "_id": pa.array(["4", "abc"]),
            "n": pa.array([1, None], pa.int32()),
            "name": pa.array(["x", "y"]),
            "j": pa.array(['"s"', "1"]),
            "_op": pa.array(["i", "i"]),
        }
    )
    parts = [ChangeBatch("t", data, ("_id",))]
    table = TableSpec("t", ("_id",), spec)
    out_spec, (out,) = typed_as_json(_Columns({"_id", "n", "j"}), table, parts)
    assert out.data.column("_id").to_pylist() == ['"4"', '"abc"']
    assert out.data.column("n").to_pylist() == ["1", None]
    assert out.data.column("name").to_pylist() == ["x", "y"]
    assert out.data.column("j").to_pylist() == ['"s"', "1"]
    kinds = {f.name: (f.metadata or {}).get(b"bson_type") for f in out_spec.schema}
    assert kinds == {"_id": b"json", "n": b"json", "name": b"string", "j": b"json"}
    # nothing to do: the same objects back
    assert typed_as_json(_Columns({"j"}), table, parts) == (table, parts)
    assert typed_as_json(object(), table, parts) == (table, parts)
