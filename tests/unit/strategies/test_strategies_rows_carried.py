"""Conflict hashes of a Postgres column a batch carries as text (issue 23): the same value
hashes alike in its text and its native form; a value with no native form never equals one."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa

from syncengine.conflicts.rows import EXISTS, canonical, carried_columns, row_hashes
from syncengine.targets.base import TableSpec


def spec_of(types: dict[str, pa.DataType]) -> TableSpec:
    pg = {"t": "time without time zone", "n": "numeric(10,2)", "a": "integer[]"}
    fields = [pa.field("id", pa.int32())]
    fields += [pa.field(n, t, metadata={"pg_type": pg[n]}) for n, t in types.items()]
    return TableSpec(name="public.c", schema=pa.schema(fields), key=("id",))


NATIVE = spec_of({"t": pa.time64("us"), "n": pa.decimal128(10, 2), "a": pa.list_(pa.int32())})
TEXT = spec_of({"t": pa.string(), "n": pa.string(), "a": pa.string()})


def hashes(table: pa.Table, spec: TableSpec) -> list[str]:
    frame = canonical(table, spec)
    frame = frame.with_columns(frame["id"].is_not_null().alias(EXISTS))
    return row_hashes(frame, spec.schema.names, carried_columns(spec.schema)).to_list()


def test_text_and_native_forms_hash_alike_and_beyond_values_differ():
    assert carried_columns(NATIVE.schema) == {}
    assert set(carried_columns(TEXT.schema)) == {"t", "n", "a"}
    native = pa.table(
        {
            "id": pa.array([1, 2], pa.int32()),
            "t": pa.array([dt.time(12, 30, 0, 500000), None], pa.time64("us")),
            "n": pa.array([Decimal("1.50"), Decimal("0.00")], pa.decimal128(10, 2)),
            "a": pa.array([[1, None], []], pa.list_(pa.int32())),
        }
    )
    text = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int32()),
            "t": ["12:30:00.5", None, "24:00:00"],
            "n": ["1.50", "0.00", "NaN"],
            "a": ["{1,NULL}", "{}", "{{1}}"],
        }
    )
    from_native = hashes(native, NATIVE)
    from_text = hashes(text, TEXT)
    assert from_text[:2] == from_native
    assert from_text[2] not in from_native and from_text[2] is not None
    # a native read-back compared under a text batch's spec: the same hashes again
    assert hashes(native, TEXT) == from_native
    # a changed value still changes the hash
    changed = text.set_column(1, "t", pa.array(["12:30:01", None, "24:00:00"]))
    assert hashes(changed, TEXT)[0] != from_native[0]


def test_stale_hashes_are_recomputed_in_native_form_or_left_stale_when_undecodable():
    import polars as pl

    from syncengine.conflicts.rows import HASH_TAG, polars_schema, retag_hashes

    ids = pa.array([1], pa.int32())
    text = pa.table({"id": ids, "t": ["10:00:00"], "n": ["1.50"], "a": ["{2}"]})
    fresh = hashes(text, TEXT)
    stored = pl.Series(["pl0.0d:1", "pl0.0d:2"])
    bases = pl.Series(['{"id":1,"t":"10:00:00","n":"1.50","a":"{2}"}', '{"id":2,"n":"NaN"}'])
    # under a text batch's spec: recomputed in native form, equal to the native hash
    native = pa.table(
        {
            "id": pa.array([1], pa.int32()),
            "t": pa.array([dt.time(10)], pa.time64("us")),
            "n": pa.array([Decimal("1.50")], pa.decimal128(10, 2)),
            "a": pa.array([[2]], pa.list_(pa.int32())),
        }
    )
    retagged = retag_hashes(stored, bases, polars_schema(TEXT), carried_columns(TEXT.schema))
    assert retagged[0] == fresh[0] == hashes(native, NATIVE)[0]
    assert retagged[1].startswith(HASH_TAG)
    # under a native spec a stored NaN has no native form: left stale, no crash (a fresh
    # Series: retag_hashes scatters into the one it is given)
    stale = ["pl0.0d:1", "pl0.0d:2"]
    assert retag_hashes(pl.Series(stale), bases, polars_schema(NATIVE)).to_list() == stale


def test_stored_rows_decode_values_without_native_form_as_null():
    """A conflict's base row (the shadow) stored from a text batch, read under a native spec."""
    import polars as pl
    import pytest

    from syncengine.conflicts.rows import decode_rows, polars_schema

    bases = pl.Series(['{"id":1,"t":"24:00:00","n":"NaN","a":"[0:1]={7,8}"}',
                       '{"id":2,"t":"10:00:00","n":"1.50","a":[3]}'])  # fmt: skip
    frame = decode_rows(bases, polars_schema(NATIVE))
    assert frame.rows() == [
        (1, None, None, None),
        (2, dt.time(10), Decimal("1.50"), [3]),
    ]
    with pytest.raises(pl.exceptions.ComputeError):
        decode_rows(bases, polars_schema(NATIVE), strict=True)


def test_rows_decoded_for_writing_keep_values_without_native_form_as_text():
    """A parked row or held change stored from a text batch, released under a native spec."""
    import polars as pl

    from syncengine.conflicts.widen import decode_exact

    stored = pl.Series(['{"id":1,"t":"24:00:00","n":"1.50","a":[1,null]}',
                        '{"id":2,"t":"10:00:00.500","n":"2.00","a":"{{1},{2}}"}'])  # fmt: skip
    spec, frame = decode_exact(stored, NATIVE)
    assert [spec.schema.field(c).type for c in ("t", "n", "a")] == [
        pa.string(), pa.decimal128(10, 2), pa.string(),
    ]  # fmt: skip
    assert spec.schema.field("a").metadata[b"pg_type"] == b"integer[]"
    assert frame["t"].to_list() == ["24:00:00", "10:00:00.500"]
    assert frame["n"].to_list() == [Decimal("1.50"), Decimal("2.00")]
    assert frame["a"].to_list() == ["{1,NULL}", "{{1},{2}}"]  # a native list: its literal
    # every value with a native form: the spec and types unchanged
    same, native = decode_exact(stored.head(1).str.replace("24:00:00", "23:00:00"), NATIVE)
    assert same == NATIVE and native["t"].to_list() == [dt.time(23)]
    assert native["a"].to_list() == [[1, None]]
