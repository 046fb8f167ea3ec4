"""Timestamps floored to what a millisecond target holds (syncengine/targets/precision.py)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pyarrow as pa
from syncengine.strategies.base import EXISTS

from syncengine.changes import ChangeBatch
from syncengine.conflicts.rows import encode_rows, polars_schema, retag_hashes, row_hashes
from syncengine.targets.base import TableSpec
from syncengine.targets.precision import floored, frame_floor, held_as_stored

UTC = dt.UTC
STAMP = pa.timestamp("us", tz="UTC")
SPEC = TableSpec(
    "t",
    ("id", "key_at"),
    pa.schema(
        [
            ("id", pa.int64()),
            ("key_at", STAMP),
            ("at", STAMP),
            ("naive", pa.timestamp("us")),
            ("ats", pa.list_(STAMP)),
            ("day", pa.date32()),
        ]
    ),
)


class MilliTarget:
    timestamp_unit = "ms"


def table() -> pa.Table:
    odd = dt.datetime(2026, 12, 8, 10, 0, 0, 123456, tzinfo=UTC)
    before_1970 = dt.datetime(1969, 12, 31, 23, 59, 59, 999999)
    return pa.table(
        {
            "id": [1, 2, 3],
            "key_at": pa.array([odd, odd, odd], STAMP),
            "at": pa.array([odd, None, odd], STAMP),
            "naive": pa.array([before_1970, before_1970, None], pa.timestamp("us")),
            "ats": pa.array([[odd, None], None, []], pa.list_(STAMP)),
            "day": pa.array([dt.date(2026, 1, 1)] * 3, pa.date32()),
        },
        schema=SPEC.schema,
    )


def test_finer_timestamps_are_floored_as_bson_stores_them_and_keys_keep_theirs():
    batch = ChangeBatch("t", table().slice(1, 2), ["id", "key_at"])
    [out] = held_as_stored(MilliTarget(), SPEC, [ChangeBatch("t", table(), ["id", "key_at"])])
    got = out.data.to_pylist()
    assert out.data.schema == SPEC.schema  # types unchanged
    ms = dt.datetime(2026, 12, 8, 10, 0, 0, 123000, tzinfo=UTC)
    assert [r["at"] for r in got] == [ms, None, ms]
    assert [r["ats"] for r in got] == [[ms, None], None, []]
    # the driver floors (not rounds toward zero) before 1970: 23:59:59.999999 → .999
    assert got[0]["naive"] == dt.datetime(1969, 12, 31, 23, 59, 59, 999000)
    assert all(r["key_at"].microsecond == 123456 for r in got)  # a key names its row
    # a slice (a batch's rows past the first) floors its own rows only
    assert floored(batch.data, ["ats"], "ms").column("ats").to_pylist() == [None, []]


def test_a_target_holding_what_it_is_sent_gets_the_same_batches():
    parts = [ChangeBatch("t", table(), ["id", "key_at"])]
    assert held_as_stored(object(), SPEC, parts) is parts
    assert frame_floor(object(), SPEC) is None


def test_a_hash_stored_with_microseconds_is_recomputed_floored():
    """A shadow row stored before (the source's microseconds, an older tag) compares equal
    to the document read back with milliseconds, once recomputed."""
    rows = pl.from_arrow(table())
    assert isinstance(rows, pl.DataFrame)
    columns = list(SPEC.schema.names)
    bases = encode_rows(rows, columns)
    stored = ["pl0.0h:1", "pl0.0h:2", "pl0.0h:3"]  # (retag_hashes scatters into its Series)
    read_back = pl.from_arrow(floored(table(), ["at", "naive", "ats"], "ms"))
    assert isinstance(read_back, pl.DataFrame)
    local = row_hashes(read_back.with_columns(pl.lit(True).alias(EXISTS)), columns)
    floor = frame_floor(MilliTarget(), SPEC)
    retagged = retag_hashes(pl.Series(stored), bases, polars_schema(SPEC), None, floor)
    assert retagged.to_list() == local.to_list()
    unfloored = retag_hashes(pl.Series(stored), bases, polars_schema(SPEC))
    assert unfloored[0] != local[0]  # without the floor the old microseconds differ


def test_values_written_as_postgres_text_keep_their_microseconds():
    """Beyond years 1-9999 (infinity, BC, past 9999) a Mongo target writes the Postgres text,
    every microsecond of it: only the values that become BSON dates are floored."""
    beyond = [2**63 - 1, -(2**63), -62_135_596_800_000_000 - 1_500, 253_402_300_800_000_001]
    values = pa.array([*beyond, 1_500, None], STAMP)
    out = floored(pa.table({"at": values}), ["at"], "ms").column("at").cast(pa.int64())
    assert out.to_pylist() == [*beyond, 1_000, None]
