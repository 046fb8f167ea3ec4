"""Numbers hash by value: a schemaless source's int and double of one value are one row (its
field drifts between the two from batch to batch), other values stay apart; and a batch's
integers take the type of a float column they are written into, where exact."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from syncengine.conflicts.rows import EXISTS, row_hashes
from syncengine.conflicts.widen import float_columns
from syncengine.targets.base import TableSpec

BIG = 2**60 + 1


def _hash(values: list, dtype: pl.DataType) -> list[str]:
    frame = pl.DataFrame({"v": pl.Series(values, dtype=dtype)}).with_columns(
        pl.lit(True).alias(EXISTS)
    )
    return row_hashes(frame, ["v"]).to_list()


def test_an_int_and_the_double_of_its_value_hash_alike():
    ints = _hash([5, -7, 0, 2**53, None], pl.Int64)
    doubles = _hash([5.0, -7.0, -0.0, float(2**53), None], pl.Float64)
    assert ints == doubles


def test_a_decimal_hashes_by_value_whatever_its_scale():
    """A source's ``numeric(10,2)`` altered to ``numeric(20,4)`` sends 2.5000 for 2.50."""
    from decimal import Decimal

    narrow = _hash([Decimal("2.50"), Decimal("5.00"), Decimal("-0.10"), None], pl.Decimal(10, 2))
    wide = _hash(
        [Decimal("2.5000"), Decimal("5.0000"), Decimal("-0.1000"), None], pl.Decimal(20, 4)
    )
    assert narrow == wide
    assert _hash([Decimal("5")], pl.Decimal(10, 0)) == _hash([5], pl.Int64)
    assert _hash([Decimal("100")], pl.Decimal(10, 0)) == _hash(
        [Decimal("100.00")], pl.Decimal(12, 2)
    )
    assert _hash([Decimal("2.5")], pl.Decimal(10, 2)) != _hash([Decimal("2.05")], pl.Decimal(10, 2))
    assert _hash([Decimal("10")], pl.Decimal(10, 0)) != _hash([Decimal("1")], pl.Decimal(10, 0))


def test_values_that_differ_hash_apart():
    assert _hash([BIG], pl.Int64) != _hash([float(BIG)], pl.Float64)  # 2**60 as a double
    assert _hash([0], pl.Int64) != _hash([0.1], pl.Float64)
    assert (
        len(set(_hash([0.1, 0.30000000000000004, 0.3, float("nan"), float("inf")], pl.Float64)))
        == 5
    )
    assert _hash([5], pl.Int64) != _hash(["5"], pl.String)  # text is not a number


@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_every_int_a_double_holds_hashes_as_that_double(n):
    assert _hash([n], pl.Int64) == _hash([float(n)], pl.Float64)


def _spec(kind: pa.DataType, pg_type: str) -> TableSpec:
    fields = [pa.field("id", pa.int64()), pa.field("v", kind, metadata={"pg_type": pg_type})]
    return TableSpec("t", ("id",), pa.schema(fields))


def test_integers_into_a_double_column_become_doubles_where_exact():
    changes = pl.DataFrame({"id": [1, 2], "v": [5, -(2**53)]})
    spec, out = float_columns(_spec(pa.int64(), "double precision"), changes)
    assert spec.schema.field("v").type == pa.float64()
    assert spec.schema.field("v").metadata == {b"pg_type": b"double precision"}
    assert out["v"].to_list() == [5.0, -(2.0**53)]
    assert out["id"].dtype == pl.Int64  # an integer column stays one


def test_integers_a_double_cannot_hold_keep_their_type():
    changes = pl.DataFrame({"id": [1], "v": [BIG]})
    spec, out = float_columns(_spec(pa.int64(), "double precision"), changes)
    assert spec.schema.field("v").type == pa.int64()
    assert out["v"].to_list() == [BIG]
    changes = pl.DataFrame({"id": [1], "v": [2**24 + 1]})
    assert float_columns(_spec(pa.int32(), "real"), changes)[0].schema.field("v").type == pa.int32()


def test_columns_the_target_holds_as_integers_are_left_alone():
    changes = pl.DataFrame({"id": [1], "v": [5]})
    spec = _spec(pa.int64(), "bigint")
    out_spec, out = float_columns(spec, changes)
    assert out_spec is spec and out is changes


def test_json_documents_compare_numbers_by_value():
    from syncengine.conflicts.detect import _canonical_json

    same = _canonical_json('{"a":5.0,"b":[1.0,2.5],"c":{"d":-0.0}}')
    assert same == _canonical_json('{"c": {"d": 0}, "b": [1, 2.5], "a": 5}')
    assert _canonical_json('{"a":0.1}') != _canonical_json('{"a":0}')
    assert _canonical_json(f'{{"a":{2**60 + 1}}}') != _canonical_json(f'{{"a":{float(2**60)}}}')


def test_numbers_inside_sub_documents_and_arrays_hash_by_value():
    ints = pl.Series(
        "v", [{"a": 5, "b": [1, 2]}, None], dtype=pl.Struct({"a": pl.Int64, "b": pl.List(pl.Int64)})
    )
    doubles = pl.Series("v", [{"a": 5.0, "b": [1.0, 2.0]}, None])
    other = pl.Series("v", [{"a": 5.5, "b": [1.0, 2.0]}, None])

    def hashes(series: pl.Series) -> list[str]:
        frame = series.to_frame().with_columns(pl.lit(True).alias(EXISTS))
        return row_hashes(frame, ["v"]).to_list()

    assert hashes(ints) == hashes(doubles)
    assert hashes(ints)[0] != hashes(other)[0]
    empty = pl.Series("v", [{"a": None, "b": None}], dtype=ints.dtype)
    assert hashes(empty) != hashes(ints[1:])  # an empty sub-document is not a missing one


def test_floats_where_widens_only_the_integers_stored_as_doubles():
    from syncengine.codecs.arrow_numbers import floats_where, holds_integers

    base = pa.struct([("a", pa.int64()), ("b", pa.list_(pa.int32())), ("c", pa.string())])
    seen = pa.struct([("b", pa.list_(pa.float64())), ("a", pa.int64()), ("z", pa.float64())])
    assert floats_where(base, seen) == pa.struct(
        [("a", pa.int64()), ("b", pa.list_(pa.float64())), ("c", pa.string())]
    )
    assert floats_where(base, pa.string()) == base
    assert holds_integers(base) and not holds_integers(pa.struct([("c", pa.string())]))
    assert not holds_integers(pa.int64())  # a top-level number is not nested


def test_a_key_keeps_its_type_it_names_the_row():
    from syncengine.conflicts.widen import float_read

    fields = [pa.field("id", pa.int64(), metadata={"pg_type": "double precision"})]
    spec = TableSpec("t", ("id",), pa.schema(fields))
    changes = pl.DataFrame({"id": [5]})
    out_spec, out = float_columns(spec, changes)
    assert out_spec is spec and out is changes  # {"id":5} stays the shadow's row key
    read = pa.table({"id": pa.array([5.0])})
    assert float_read(spec, read) == {}
