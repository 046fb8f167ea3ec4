"""Which numbers a write sends that a numeric column cannot hold exactly
(syncengine.targets.postgres.exact): integers beyond a float column's exact range."""

from __future__ import annotations

import pyarrow as pa

from syncengine.targets.postgres.exact import Numbers, numbers_of, widenings

BIG = 2**60 + 1


def test_integers_give_their_extremes():
    field = pa.field("v", pa.int64())
    numbers = numbers_of(pa.chunked_array([[3, None, -BIG]]), field)
    assert numbers == Numbers(-BIG, 3)
    assert numbers.beyond(2**53) and not numbers.beyond(2**61)


def test_text_json_and_floats_have_no_numbers_to_check():
    assert numbers_of(pa.chunked_array([["1.5"]]), pa.field("v", pa.string())) is None
    json_field = pa.field("v", pa.string(), metadata={b"bson_type": b"json"})
    assert numbers_of(pa.chunked_array([[str(BIG)]]), json_field) is None  # jsonpromote's
    assert numbers_of(pa.chunked_array([[1.5]]), pa.field("v", pa.float64())) is None


def test_widenings_name_only_the_columns_that_cannot_hold_their_values():
    data = pa.table(
        {
            "id": pa.array([BIG, 2], pa.int64()),
            "fits": pa.array([2**53, -(2**53)], pa.int64()),
            "big": pa.array([BIG, 1], pa.int64()),
            "small": pa.array([2**24 + 1, 0], pa.int32()),
            "count": pa.array([BIG, 1], pa.int64()),
        }
    )
    columns = {
        "id": "double precision",  # a key: never altered here
        "fits": "double precision",
        "big": "double precision",
        "small": "real",
        "count": "bigint",
    }
    assert sorted(widenings(data, columns, ("id",))) == ["big", "small"]
