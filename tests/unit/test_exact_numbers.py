"""Which numbers a write sends that a numeric column cannot hold exactly
(syncengine.targets.postgres.exact), from Arrow integers and from JSON-carried Mongo values."""

from __future__ import annotations

import pyarrow as pa

from syncengine.targets.postgres.exact import Numbers, numbers_of, widenings

JSON = {b"bson_type": b"json"}
BIG = 2**60 + 1


def test_integers_give_their_extremes():
    field = pa.field("v", pa.int64())
    numbers = numbers_of(pa.chunked_array([[3, None, -BIG]]), field)
    assert numbers == Numbers(-BIG, 3, fractions=False)
    assert numbers.beyond(2**53) and not numbers.beyond(2**61)


def test_json_numbers_are_read_from_their_text():
    field = pa.field("v", pa.string(), metadata=JSON)
    values = pa.chunked_array([[str(BIG), "0.5", None, '"12345678901234567890"', "{}", "-7"]])
    assert numbers_of(values, field) == Numbers(-7, BIG, fractions=True)


def test_json_exponents_are_fractions_and_strings_are_not_numbers():
    field = pa.field("v", pa.string(), metadata=JSON)
    assert numbers_of(pa.chunked_array([["1e+300"]]), field) == Numbers(None, None, True)
    assert numbers_of(pa.chunked_array([['"1.5"', "true"]]), field) == Numbers(None, None, False)


def test_plain_text_and_floats_have_no_numbers_to_check():
    assert numbers_of(pa.chunked_array([["1.5"]]), pa.field("v", pa.string())) is None
    assert numbers_of(pa.chunked_array([[1.5]]), pa.field("v", pa.float64())) is None


def test_widenings_name_only_the_columns_that_cannot_hold_their_values():
    data = pa.table(
        {
            "id": pa.array([BIG, 2], pa.int64()),
            "fits": pa.array([2**53, -(2**53)], pa.int64()),
            "big": pa.array([BIG, 1], pa.int64()),
            "small": pa.array([2**24 + 1, 0], pa.int32()),
            "j": pa.array(["0.5", "1"], pa.string()),
            "k": pa.array(["2", "1"], pa.string()),
        }
    )
    spec = pa.schema(
        [pa.field("j", pa.string(), metadata=JSON), pa.field("k", pa.string(), metadata=JSON)]
    )
    columns = {
        "id": "double precision",  # a key: never altered here
        "fits": "double precision",
        "big": "double precision",
        "small": "real",
        "j": "bigint",
        "k": "bigint",
    }
    assert sorted(widenings(data, spec, columns, ("id",))) == ["big", "j", "small"]
