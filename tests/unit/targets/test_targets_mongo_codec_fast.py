"""The column-at-a-time Arrow → BSON conversions give exactly the values of the per-value path."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from decimal import Decimal
from typing import Any

import bson
import pyarrow as pa
import pytest
from bson import Binary, Decimal128, Int64
from bson.codec_options import CodecOptions
from hypothesis import given, settings
from hypothesis import strategies as st

from syncengine.codecs.arrow_bson import _kind, arrow_to_documents, column_values, converter

STANDARD: CodecOptions = CodecOptions(uuid_representation=4)


def slow(field: pa.Field, values: pa.ChunkedArray) -> list[Any]:
    """The per-value path the fast one must equal."""
    if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
        field = field.with_type(pa.timestamp("us", tz=field.type.tz))
        values = values.cast(field.type, safe=False)
    convert = converter(field)
    return [None if v is None or convert is None else convert(v) for v in values.to_pylist()]


def same(field: pa.Field, data: pa.Array | pa.ChunkedArray) -> list[Any]:
    chunked = data if isinstance(data, pa.ChunkedArray) else pa.chunked_array([data])
    fast, expected = column_values(field, chunked), slow(field, chunked)
    assert [type(v) for v in fast] == [type(v) for v in expected]
    assert bson.encode({"v": fast}, codec_options=STANDARD) == bson.encode(
        {"v": expected}, codec_options=STANDARD
    )
    assert fast == expected
    return fast


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 34).flatmap(
        lambda p: st.tuples(
            st.just(p),
            st.integers(0, p),
            st.lists(st.one_of(st.none(), st.integers(-(10**p) + 1, 10**p - 1)), max_size=8),
        )
    )
)
def test_decimals_equal_the_decimal_path(case: tuple[int, int, list[int | None]]) -> None:
    precision, scale, unscaled = case
    values = [None if u is None else Decimal(f"{u}e-{scale}") for u in unscaled]
    type_ = pa.decimal128(precision, scale)
    out = same(pa.field("d", type_), pa.array(values, type_))
    assert all(v is None or isinstance(v, Decimal128) for v in out)


def test_wide_decimals_and_decimal_text_take_the_value_path() -> None:
    wide = pa.decimal128(38, 2)
    assert _kind(pa.field("d", wide))[0] == "decimal"
    same(pa.field("d", wide), pa.array([Decimal("1" * 36 + ".25"), None, Decimal("-0.01")], wide))
    text = pa.field("d", pa.string(), metadata={"bson_type": "decimal"})
    same(text, pa.array(["1E+40", "12.5", None]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), max_size=8))
def test_int64_values_are_int64(values: list[int | None]) -> None:
    out = same(pa.field("i", pa.int64()), pa.array(values, pa.int64()))
    assert all(v is None or isinstance(v, Int64) for v in out)


def test_uint64_beyond_int64_keeps_the_value_path() -> None:
    same(pa.field("u", pa.uint64()), pa.array([2**64 - 1, 1, None], pa.uint64()))


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", ["UTC", "+02:00", "America/New_York"])
def test_aware_timestamps_become_utc(unit: str, tz: str) -> None:
    low, high = (1678, 2261) if unit == "ns" else (1, 9998)
    moments = [
        dt.datetime(2024, 3, 10, 6, 59, 59, 123456, tzinfo=dt.UTC),
        None,
        dt.datetime(low, 1, 2, tzinfo=dt.UTC),
        dt.datetime(high, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
    ]
    type_ = pa.timestamp(unit, tz=tz)
    data = pa.chunked_array([pa.array(moments[:2], type_), pa.array(moments[2:], type_)])
    out = same(pa.field("t", type_), data)
    assert all(v is None or v.tzinfo is dt.UTC for v in out)


@pytest.mark.parametrize("text", [pa.string(), pa.large_string()])
def test_uuid_text_canonical_or_not(text: pa.DataType) -> None:
    field = pa.field("u", text, metadata={"pg_type": "uuid"})
    ids = [str(uuid.uuid4()), None, str(uuid.uuid4()).upper()]
    out = same(field, pa.array(ids, text))
    assert isinstance(out[0], Binary) and out[0].subtype == 4
    odd = [f"{{{uuid.uuid4()}}}", uuid.uuid4().hex, f"urn:uuid:{uuid.uuid4()}"]
    same(field, pa.array(odd, text))  # spellings uuid.UUID accepts: the value path
    with pytest.raises(ValueError):
        column_values(field, pa.chunked_array([pa.array(["not-a-uuid"], text)]))


@pytest.mark.parametrize("text", [pa.string(), pa.large_string()])
def test_json_columns_parse_like_json_loads(text: pa.DataType) -> None:
    field = pa.field("j", text, metadata={"pg_type": "jsonb"})
    texts = ['{"a": [1, {"b": null}]}', None, "[]", '"x,y"', "3.5", "null", '{"k": "\\u00e9"}']
    same(field, pa.array(texts, text))
    with pytest.raises(json.JSONDecodeError):
        column_values(field, pa.chunked_array([pa.array(["{", "}"], text)]))


def test_documents_from_sliced_and_chunked_columns() -> None:
    """Offsets of sliced arrays (a batch is often a slice of a larger table) are respected."""
    type_ = pa.decimal128(12, 2)
    big = pa.table(
        {
            "d": pa.array([Decimal(i).scaleb(-2) for i in range(-5, 5)], type_),
            "t": pa.array([dt.datetime(2024, 1, 1, i, tzinfo=dt.UTC) for i in range(10)],
                          pa.timestamp("us", tz="UTC")),
        }
    )  # fmt: skip
    part = pa.concat_tables([big.slice(3, 4), big.slice(8, 2)])
    docs = arrow_to_documents(part)
    assert [d["d"] for d in docs] == [
        Decimal128(Decimal(i).scaleb(-2)) for i in (-2, -1, 0, 1, 3, 4)
    ]
    assert [d["t"].hour for d in docs] == [3, 4, 5, 6, 8, 9]


@pytest.mark.parametrize(
    ("type_", "meta"),
    [
        (pa.decimal128(12, 2), None),
        (pa.timestamp("us", tz="UTC"), None),
        (pa.int64(), None),
        (pa.string(), {"pg_type": "uuid"}),
        (pa.string(), {"pg_type": "jsonb"}),
    ],
)
def test_empty_and_all_null_columns(type_: pa.DataType, meta: dict[str, str] | None) -> None:
    field = pa.field("x", type_, metadata=meta)
    assert column_values(field, pa.chunked_array([], type_)) == []
    assert same(field, pa.array([None, None], type_)) == [None, None]


def test_postgres_dates_beyond_python_become_their_postgres_text() -> None:
    """Infinity and BC (docs/postgres-source.md, "Values beyond Arrow"): the text, never a
    null; the other values of the column stay BSON dates."""
    stamps = pa.array([2**63 - 1, -(2**63), -210863520000000000, 0, None], pa.int64())
    zoned = pa.field("at", pa.timestamp("us", tz="UTC"))
    assert column_values(zoned, stamps.cast(zoned.type)) == [
        "infinity",
        "-infinity",
        "4713-01-01 00:00:00+00 BC",
        dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
        None,
    ]
    days = pa.array([2**31 - 1, -2440550, 1], pa.int32()).cast(pa.date32())
    assert column_values(pa.field("d", pa.date32()), days) == [
        "infinity",
        "4713-01-01 BC",
        dt.datetime(1970, 1, 2, tzinfo=dt.UTC),
    ]


def test_postgres_text_forms_of_arrays_and_numeric_nan() -> None:
    ints = pa.field("ia", pa.string(), metadata={"pg_type": "integer[]"})
    values = pa.array(["{{1,2},{3,NULL}}", "[0:1]={7,8}", "{}", None])
    assert column_values(ints, values) == [[[1, 2], [3, None]], "[0:1]={7,8}", [], None]
    floats = pa.field("fa", pa.string(), metadata={"pg_type": "double precision[]"})
    got = column_values(floats, pa.array(["{{Infinity,-0},{NaN,1.5}}"]))[0]
    assert got[0] == [float("inf"), -0.0] and got[1][1] == 1.5 and got[1][0] != got[1][0]
    texts = pa.field("ta", pa.string(), metadata={"pg_type": "text[]"})
    assert column_values(texts, pa.array(["{{a,b}}"])) == ["{{a,b}}"]  # kept as text
    nan = pa.field("n", pa.string(), metadata={"pg_type": "numeric(12,2)"})
    assert column_values(nan, pa.array(["NaN", "1.25"])) == [
        Decimal128("NaN"),
        Decimal128(Decimal("1.25")),
    ]
