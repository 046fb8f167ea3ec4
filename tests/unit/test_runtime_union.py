"""Batches of one target table with different schemas share a spec that never narrows."""

from __future__ import annotations

import pyarrow as pa

from syncengine.runtime.pipeline import common_field


def test_common_field_widens():
    def common(a, b):
        return common_field(pa.field("v", a), pa.field("v", b)).type

    assert common(pa.int64(), pa.float64()) == pa.float64()
    assert common(pa.float64(), pa.int64()) == pa.float64()
    assert common(pa.null(), pa.string()) == pa.string()
    assert common(pa.decimal128(10, 1), pa.decimal128(10, 3)) == pa.decimal128(12, 3)
    assert common(pa.string(), pa.int64()) == pa.string()
    assert common(pa.int32(), pa.int64()) == pa.int64()


def test_widened_cast_keeps_values():
    values = pa.array([0.01, 0.5])
    target = common_field(pa.field("v", pa.int64()), pa.field("v", pa.float64())).type
    assert values.cast(target).to_pylist() == [0.01, 0.5]


def declared(name: str, arrow: pa.DataType, pg_type: str | None) -> pa.Field:
    return pa.field(name, arrow, metadata={"pg_type": pg_type} if pg_type else None)


def test_a_column_altered_inside_a_group_is_declared_as_the_type_holding_both():
    def joined(a, b):
        field = common_field(a, b)
        return field.type, (field.metadata or {}).get(b"pg_type")

    old = declared("v", pa.int32(), "integer")
    new = declared("v", pa.int64(), "bigint")
    assert joined(old, new) == joined(new, old) == (pa.int64(), b"bigint")
    # the Arrow type stays, only the declaration changes (the microseconds need it)
    old = declared("t", pa.timestamp("us", "UTC"), "timestamp(0) with time zone")
    new = declared("t", pa.timestamp("us", "UTC"), "timestamp with time zone")
    assert joined(old, new)[1] == b"timestamp with time zone"
    old = declared("p", pa.decimal128(10, 4), "numeric(10,4)")
    new = declared("p", pa.decimal128(12, 2), "numeric(12,2)")
    assert joined(old, new) == (pa.decimal128(14, 4), b"numeric(14,4)")
    # no Postgres type holds both: the Arrow type decides at the target
    old = declared("u", pa.int32(), "integer")
    new = declared("u", pa.string(), "uuid")
    assert joined(old, new) == (pa.string(), None)
