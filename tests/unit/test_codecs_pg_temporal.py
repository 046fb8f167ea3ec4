"""Postgres infinities / BC dates in Arrow, both ways, and the text a mixed group needs."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syncengine.changes import ChangeBatch, concat_batches
from syncengine.codecs import pg_temporal, pg_text
from syncengine.conflicts.rows import decode_rows, encode_rows

STAMP = pa.timestamp("us")
ZONED = pa.timestamp("us", tz="UTC")
#: Postgres's own range, in microseconds since 1970 (4713 BC … the last timestamp[us] value)
PG_RANGE = (-210_866_803_200_000_000, 2**63 - 2)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(*PG_RANGE) | st.none(), max_size=200))
def test_timestamps_survive_postgres_text_both_ways(values):
    for type_ in (STAMP, ZONED):
        array = pa.array(values + [2**63 - 1, -(2**63)], pa.int64()).cast(type_)
        text = pg_temporal.to_text(array)
        assert pg_temporal.parse(text, type_) == array


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-2_440_588, 2_145_042_905) | st.none(), max_size=200))
def test_dates_survive_postgres_text_both_ways(values):
    array = pa.array(values + [2**31 - 1, -(2**31)], pa.int32()).cast(pa.date32())
    assert pg_temporal.parse(pg_temporal.to_text(array), pa.date32()) == array


def test_text_is_what_postgres_prints():
    days = pa.array([-2440550, -719163, 2145042905, 19782, 2**31 - 1], pa.int32())
    assert pg_temporal.to_text(days.cast(pa.date32())).to_pylist() == [
        "4713-01-01 BC",
        "0001-12-31 BC",
        "5874897-12-31",
        "2024-02-29",
        "infinity",
    ]
    # numpy's datetime64 counts proleptic Gregorian with year 0 = 1 BC, as Postgres does
    stamp = int(np.datetime64("-0043-03-15T12:00:00.5", "us").astype(np.int64))
    zoned = pa.array([stamp, -(2**63)], pa.int64()).cast(ZONED)
    assert pg_temporal.to_text(zoned).to_pylist() == [
        "0044-03-15 12:00:00.5+00 BC",
        "-infinity",
    ]


def test_json_text_matches_polars_for_ordinary_values():
    """Conflict hashes of ordinary values must not change because a column also holds
    infinity: the same text as Polars' own JSON encoder, value by value."""
    rng = np.random.default_rng(7)
    micros = rng.integers(-62135596800000000, 253402300799999999, 5000)
    micros[:4] = [0, 120_000, 5, 1_000]
    frame = pl.DataFrame({"a": pl.Series(micros).cast(pl.Datetime("us"))}).with_columns(
        z=pl.col("a").dt.replace_time_zone("UTC"), d=pl.col("a").dt.date()
    )
    for name in frame.columns:
        encoded = frame.select(pl.struct(name).struct.json_encode()).to_series()
        want = encoded.str.json_path_match(f"$.{name}").to_list()
        assert pg_temporal.json_text(frame[name].to_arrow()).to_pylist() == want


def test_rows_with_infinity_encode_and_decode():
    table = pa.table(
        {
            "at": pa.array([2**63 - 1, 0, None], pa.int64()).cast(ZONED),
            "d": pa.array([-(2**31), -2440550, 5], pa.int32()).cast(pa.date32()),
            "n": [1, 2, 3],
        }
    )
    frame = pl.from_arrow(table)
    texts = encode_rows(frame)
    assert texts[0] == '{"at":"infinity","d":"-infinity","n":1}'
    assert texts[1] == '{"at":"1970-01-01T00:00:00+00:00","d":"4713-01-01 BC","n":2}'
    back = decode_rows(texts, dict(frame.schema))
    assert back.to_arrow().cast(table.schema) == table


def test_decode_takes_a_column_stored_as_another_type_as_json_text():
    texts = pl.Series(['{"a":[1,null,3],"n":1}', '{"a":"{{1}}","n":2}'])
    back = decode_rows(texts, {"a": pl.String, "n": pl.Int64})
    assert back.rows() == [("[1,null,3]", 1), ("{{1}}", 2)]


@pytest.mark.parametrize(
    ("values", "text"),
    [
        (pa.array([[1, None], [], None], pa.list_(pa.int32())), ["{1,NULL}", "{}", None]),
        (pa.array([['a"b', "c\\d", None]], pa.list_(pa.string())), ['{"a\\"b","c\\\\d",NULL}']),
        (pa.array([[True, False]], pa.list_(pa.bool_())), ["{t,f}"]),
        (pa.array([dt.time(23, 59, 59, 5)], pa.time64("us")), ["23:59:59.000005"]),
        (pa.array([2**63 - 1], pa.int64()).cast(STAMP), ["infinity"]),
    ],
)
def test_native_values_as_postgres_text(values, text):
    assert pg_text.as_text(values).to_pylist() == text


def test_a_group_mixing_native_and_text_batches_concatenates_as_text():
    def batch(column: pa.Array) -> ChangeBatch:
        rows = pa.table({"id": pa.array([1] * len(column), pa.int32()), "ia": column})
        return ChangeBatch.build("t", rows, ops=["c"] * len(column), positions=["1"] * len(column))

    native = batch(pa.array([[1, 2]], pa.list_(pa.int32())))
    text = batch(pa.array(["{{1,2},{3,4}}"]))
    combined = concat_batches([native, text])
    assert combined.data.column("ia").to_pylist() == ["{1,2}", "{{1,2},{3,4}}"]
