"""Text values → Arrow, column-wise, for every mapped Postgres type."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
import pytest

from syncengine.sources.postgres.columns import parse_text_array, pg_type, to_arrow

NUM = lambda p, s: ((p << 16) | s) + 4  # noqa: E731

CASES = [
    (21, -1, "smallint", pa.int16(), ["-3", None], [-3, None]),
    (23, -1, "integer", pa.int32(), ["2147483647"], [2147483647]),
    (20, -1, "bigint", pa.int64(), ["-9223372036854775808"], [-(2**63)]),
    (1700, NUM(12, 2), "numeric(12,2)", pa.decimal128(12, 2), ["-1.25"], [Decimal("-1.25")]),
    (1700, NUM(50, 5), "numeric(50,5)", pa.string(), ["1.00000"], ["1.00000"]),
    (
        1700,
        -1,
        "numeric",
        pa.string(),
        ["123456789012345678901234567890123456789012.5"],
        ["123456789012345678901234567890123456789012.5"],
    ),
    (700, -1, "real", pa.float32(), ["1.5"], [1.5]),
    (701, -1, "double precision", pa.float64(), ["-Infinity"], [float("-inf")]),
    (25, -1, "text", pa.string(), ["héllo"], ["héllo"]),
    (1043, 14, "character varying(10)", pa.string(), ["x"], ["x"]),
    (1042, 7, "character(3)", pa.string(), ["ab "], ["ab "]),
    (16, -1, "boolean", pa.bool_(), ["t", "f", None], [True, False, None]),
    (17, -1, "bytea", pa.binary(), ["\\x00ff"], [b"\x00\xff"]),
    (1082, -1, "date", pa.date32(), ["2024-02-29"], [dt.date(2024, 2, 29)]),
    (
        1083,
        -1,
        "time without time zone",
        pa.time64("us"),
        ["23:59:59.999999"],
        [dt.time(23, 59, 59, 999999)],
    ),
    (
        1114,
        -1,
        "timestamp without time zone",
        pa.timestamp("us"),
        ["2024-01-02 03:04:05.5"],
        [dt.datetime(2024, 1, 2, 3, 4, 5, 500000)],
    ),
    (
        1184,
        -1,
        "timestamp with time zone",
        pa.timestamp("us", "UTC"),
        ["2024-01-02 03:04:05+00"],
        [dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)],
    ),
    (1186, -1, "interval", pa.string(), ["1 day 02:00:00"], ["1 day 02:00:00"]),
    (
        2950,
        -1,
        "uuid",
        pa.string(),
        ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"],
        ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"],
    ),
    (3802, -1, "jsonb", pa.string(), ['{"a": 1}'], ['{"a": 1}']),
    (114, -1, "json", pa.string(), ['{"a":1}'], ['{"a":1}']),
    (1007, -1, "integer[]", pa.list_(pa.int32()), ["{1,NULL,3}", "{}"], [[1, None, 3], []]),
    (1016, -1, "bigint[]", pa.list_(pa.int64()), ["{9000000000}"], [[9000000000]]),
    (
        1009,
        -1,
        "text[]",
        pa.list_(pa.string()),
        ['{a,"b,c","NULL",NULL}'],
        [["a", "b,c", "NULL", None]],
    ),
    (869, -1, "inet", pa.string(), ["10.0.0.1/8"], ["10.0.0.1/8"]),
]


@pytest.mark.parametrize(("oid", "typmod", "name", "arrow", "text", "expected"), CASES)
def test_type_mapping_and_conversion(oid, typmod, name, arrow, text, expected):
    type_ = pg_type(oid, typmod)
    assert type_.name == name and type_.arrow == arrow
    got = to_arrow(pa.array(text, pa.string()), type_)
    assert got.type == arrow
    if arrow == pa.timestamp("us", "UTC"):
        got = got.cast(pa.int64())
        expected = [int(e.timestamp() * 1_000_000) for e in expected]
    assert got.to_pylist() == expected


def test_enum_takes_the_type_message_name():
    assert pg_type(16600, -1, {16600: "mood"}).name == "mood"
    assert pg_type(16601, -1).arrow == pa.string()


INF, NINF = 2**63 - 1, -(2**63)


@pytest.mark.parametrize(
    ("oid", "text", "raw"),
    [
        (1082, ["infinity", "-infinity", "2024-02-29"], [2**31 - 1, -(2**31), 19782]),
        (1082, ["4713-01-01 BC", "0001-12-31 BC"], [-2440550, -719163]),
        (1082, ["5874897-12-31"], [2145042905]),
        (1114, ["infinity", "-infinity", None], [INF, NINF, None]),
        (1114, ["4713-01-01 00:00:00 BC"], [-210863520000000000]),
        (
            1114,
            ["0001-01-01 00:00:00.5 BC", "20000-01-01 00:00:00"],
            [-62167219199500000, 568971820800000000],
        ),
        (
            1184,
            ["infinity", "2024-01-02 03:04:05+00", "0044-03-15 12:00:00+00 BC"],
            [INF, 1704164645000000, -63517780800000000],
        ),
    ],
)
def test_infinities_and_bc_keep_the_native_type(oid, text, raw):
    """Infinity is the type's extreme value (as inside Postgres); BC dates count backwards
    (expected counts checked against numpy's proleptic-Gregorian datetime64)."""
    type_ = pg_type(oid, -1)
    got = to_arrow(pa.array(text, pa.string()), type_, "c")
    assert got.type == type_.arrow
    width = pa.int32() if oid == 1082 else pa.int64()
    assert got.cast(width).to_pylist() == raw


@pytest.mark.parametrize(
    ("oid", "text"),
    [
        (1083, ["24:00:00", "12:00:00"]),  # a legal time with no time64 form
        (1007, ["{{1,2},{3,4}}", "{5}"]),  # two dimensions
        (1007, ["[0:1]={1,2}"]),  # explicit lower bound
        (1009, ['{{a,"b c"},{d,e}}']),  # text elements: the split would be silently wrong
        (1000, ["{{t,f}}"]),  # booleans likewise
        (1700, ["NaN", "1.5"]),  # numeric(12,2) → decimal128 has no NaN
        (1114, ["294250-01-01 00:00:00"]),  # beyond timestamp[us]
    ],
)
def test_values_without_an_arrow_form_travel_as_text(oid, text):
    """The batch carries the column in Postgres's text form, exactly; ``pg_type`` unchanged."""
    type_ = pg_type(oid, NUM(12, 2) if oid == 1700 else -1)
    got = to_arrow(pa.array(text, pa.string()), type_, "c")
    assert got.type == pa.string() and got.to_pylist() == text
    field = type_.field("c", got.type)
    assert field.type == pa.string() and field.metadata == {b"pg_type": type_.name.encode()}


def test_text_array_parser_handles_quotes_and_escapes():
    assert parse_text_array('{"a\\"b","c\\\\d",e}') == ['a"b', "c\\d", "e"]
    assert parse_text_array("{}") == []
