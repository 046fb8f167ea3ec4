"""Target read-backs of Postgres values without an Arrow form (issue 23): stored values become
the text Postgres prints, restored natively where every value has a native form, else kept as
text with ``pg_type``, the form a source batch carries the column in."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
from bson import Decimal128

from syncengine.codecs import pg_carried, pg_temporal
from syncengine.targets.base import TableSpec
from syncengine.targets.mongo.ops import documents_to_rows


def field(name: str, t: pa.DataType, pg_type: str) -> pa.Field:
    return pa.field(name, t, metadata={"pg_type": pg_type})


def test_held_natively_matches_polars_forms_and_only_types_that_can_be_text():
    assert pg_carried.held_natively(pa.field("t", pa.time64("ns")), "time without time zone")
    ints = pa.large_list(pa.int32())
    assert pg_carried.held_natively(pa.field("a", ints), "integer[]").kind == "list"
    assert pg_carried.held_natively(pa.field("a", pa.string()), "integer[]") is None  # text
    assert pg_carried.held_natively(pa.field("d", pa.date32()), "date") is None
    assert pg_carried.held_natively(pa.field("n", pa.decimal128(12, 2)), "numeric") is None
    assert pg_carried.held_natively(field("n", pa.decimal128(12, 2), "numeric(12,2)")).kind


def test_restore_is_native_unless_a_value_has_no_native_form():
    f = field("t", pa.time64("us"), "time without time zone")
    native = pg_carried.held_natively(f)
    same, values = pg_carried.restore(pa.array(["10:00:00", None]), f, native)
    assert same == f and values.to_pylist() == [dt.time(10), None]
    text, values = pg_carried.restore(pa.array(["24:00:00", "10:00:00"]), f, native)
    assert text.type == pa.string() and text.metadata[b"pg_type"] == b"time without time zone"
    assert values.to_pylist() == ["24:00:00", "10:00:00"]


def test_mongo_documents_read_back_as_postgres_text_where_needed():
    schema = pa.schema(
        [
            pa.field("id", pa.int32()),
            field("t", pa.time64("us"), "time without time zone"),
            field("n", pa.decimal128(12, 2), "numeric(12,2)"),
            field("ia", pa.list_(pa.int32()), "integer[]"),
            field("ta", pa.string(), "text[]"),  # a batch carrying the column as text
            field("ts", pa.timestamp("us", "UTC"), "timestamp with time zone"),
            field("d", pa.date32(), "date"),
        ]
    )
    docs = [
        {
            "_id": 1, "id": 1, "t": "24:00:00", "n": Decimal128("NaN"), "ia": [[1, 2], [3, None]],
            "ta": ["x", "y z", None, ""], "ts": "infinity", "d": "4713-01-01 BC",
        },
        {
            "_id": 2, "id": 2, "t": "10:00:00.500000", "n": Decimal128("1.25"), "ia": [4],
            "ta": '{{a,"b c"}}', "ts": dt.datetime(2024, 1, 1, 10), "d": dt.datetime(2024, 2, 29),
        },
    ]  # fmt: skip
    table = documents_to_rows(TableSpec("e", ("id",), schema), docs)
    assert table.column("t").to_pylist() == ["24:00:00", "10:00:00.500000"]
    assert table.column("n").to_pylist() == ["NaN", "1.25"]
    assert table.column("ia").to_pylist() == ["{{1,2},{3,NULL}}", "{4}"]
    assert table.column("ta").to_pylist() == ['{x,"y z",NULL,""}', '{{a,"b c"}}']
    for name in ("t", "n", "ia", "ta"):
        assert table.schema.field(name).type == pa.string()
    # dates and timestamps keep their native type: infinity and BC have one
    stamps = table.column("ts").cast(pa.int64()).to_pylist()
    assert stamps == [2**63 - 1, 1_704_103_200_000_000]
    bc = pg_temporal.from_text(pa.array(["4713-01-01 BC"]), pa.date32()).cast(pa.int32())
    assert table.column("d").cast(pa.int32()).to_pylist() == [bc[0].as_py(), 19_782]
    # only ordinary values: the native types, unchanged
    plain = documents_to_rows(TableSpec("e", ("id",), schema.remove(4)), docs[1:])
    assert plain.column("t").to_pylist() == [dt.time(10, 0, 0, 500000)]
    assert plain.column("n").to_pylist() == [Decimal("1.25")]
    assert plain.column("ia").to_pylist() == [[4]]
