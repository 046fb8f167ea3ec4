"""Batches of one collection joined into one change group type every field as one batch of
all their documents would: a field absent from a document stays absent (not null), a field
typed differently by two batches becomes what one decode of both makes of it (a wider number,
a union sub-document, extended-JSON text), and every field keeps its ``bson_type``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pyarrow as pa
from bson import Decimal128, Int64, ObjectId, json_util
from hypothesis import given, settings
from hypothesis import strategies as st

from syncengine.changes import ChangeBatch, concat_batches
from syncengine.codecs.bson_arrow import arrow_to_documents, decode_documents, retype_across
from syncengine.runtime.pipeline import common_field, group_schema, union_schema
from syncengine.sources.mongo.batches import snapshot_batch

TS = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

_LEAVES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.integers(min_value=2**31, max_value=2**62).map(Int64),
    st.integers(min_value=2**53 - 2, max_value=2**53 + 2),
    st.floats(allow_nan=False),
    st.text(max_size=3),
    st.booleans(),
    st.sampled_from([Decimal128("1.5"), Decimal128("-0.125")]),
    st.just(dt.datetime(2024, 1, 1)),
    st.just(ObjectId("65a1b2c3d4e5f60718293a4b")),
)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("xy"), inner, max_size=2)
    ),
    max_leaves=6,
)


def _batch(docs: list[dict[str, Any]], position: str) -> ChangeBatch:
    return snapshot_batch("things", decode_documents(docs), position, TS, {})


def _documents(batch: ChangeBatch) -> list[dict[str, Any]]:
    """The documents a Mongo target would write: unsent fields omitted, BSON types back."""
    omit = {name: batch.unsent_mask(name) for name in batch.unsent_columns}
    return arrow_to_documents(batch.rows, omit={k: v for k, v in omit.items() if v is not None})


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.dictionaries(st.sampled_from("abc"), _VALUES, max_size=3), min_size=2, max_size=8),
    st.data(),
)
def test_a_joined_group_is_what_one_batch_of_its_documents_would_be(docs, data):
    docs = [{"_id": i, **doc} for i, doc in enumerate(docs)]
    cuts = sorted(data.draw(st.sets(st.integers(1, len(docs) - 1), min_size=1, max_size=3)))
    bounds = list(zip([0, *cuts], [*cuts, len(docs)], strict=True))
    parts = [_batch(docs[a:b], f"{i:04d}") for i, (a, b) in enumerate(bounds)]
    joined = concat_batches(parts)
    # each part's documents as its batch holds them (a sub-document's missing field is null
    # already there), decoded as one batch
    whole = _batch([doc for part in parts for doc in _documents(part)], "0")
    assert json_util.dumps(_documents(joined)) == json_util.dumps(_documents(whole))
    for name in whole.data_columns:
        meta = whole.data.schema.field(name).metadata
        assert joined.data.schema.field(name).metadata == meta, name
    # the group's spec (the target's columns), joined over its parts as the pipeline does,
    # types every field as the joined values are typed
    spec = group_schema([p.data.schema for p in parts], [p.data for p in parts])
    for name in joined.data_columns:
        typed = joined.data.schema.field(name)
        if not pa.types.is_null(typed.type):
            assert _kind(spec.field(name)) == _kind(typed), name


def _kind(field: pa.Field) -> tuple[pa.DataType, bytes | None]:
    return field.type, (field.metadata or {}).get(b"bson_type")


def test_an_int_in_one_batch_and_a_string_in_another_join_as_json():
    ints = _batch([{"_id": 1, "v": 1}], "1")
    texts = _batch([{"_id": 2, "v": "a"}, {"_id": 3}], "2")
    joined = concat_batches([ints, texts])
    field = joined.data.schema.field("v")
    assert field.metadata == {b"bson_type": b"json", b"pg_type": b"jsonb"}
    assert joined.data.column("v").to_pylist() == ["1", '"a"', None]
    assert _documents(joined) == [{"_id": 1, "v": 1}, {"_id": 2, "v": "a"}, {"_id": 3}]


def test_numbers_of_other_widths_are_left_to_the_join():
    small = decode_documents([{"v": 1}]).table
    large = decode_documents([{"v": 2.5}]).table
    assert retype_across([small, large]) == [small, large]


def test_tables_without_bson_types_are_untouched():
    a = pa.table({"v": pa.array([1])})
    b = pa.table({"v": pa.array(["x"])})
    out = retype_across([a, b])
    assert out[0] is a and out[1] is b


def test_the_spec_of_two_mongo_fields_that_disagree_is_json():
    def bson(type_: pa.DataType, kind: str) -> pa.Field:
        return pa.field("v", type_, metadata={"bson_type": kind})

    json = common_field(bson(pa.int32(), "int"), bson(pa.string(), "string"))
    assert json.type == pa.string()
    assert json.metadata == {b"bson_type": b"json", b"pg_type": b"jsonb"}
    assert common_field(bson(pa.string(), "objectId"), bson(pa.string(), "string")) == json
    assert common_field(bson(pa.int32(), "int"), bson(pa.float64(), "double")).type == (
        pa.float64()
    )
    plain = common_field(pa.field("v", pa.int64()), pa.field("v", pa.string()))
    assert plain.type == pa.string() and not plain.metadata


def test_a_long_a_double_cannot_hold_is_never_widened_to_one():
    """One batch: an int64 beyond 2^53 beside a double is a conflict (JSON), not a double
    (Arrow refused the inexact conversion and the whole batch failed to decode); across two
    batches Polars would have rounded it."""
    big = Int64(2**60 + 1)
    one = decode_documents([{"v": big}, {"v": 0.5}]).table
    assert one.schema.field("v").metadata[b"bson_type"] == b"json"
    joined = concat_batches(
        [_batch([{"_id": 1, "v": big}], "1"), _batch([{"_id": 2, "v": 0.5}], "2")]
    )
    assert _documents(joined) == [{"_id": 1, "v": big}, {"_id": 2, "v": 0.5}]
    exact = decode_documents([{"v": Int64(2**53)}, {"v": 0.5}]).table
    assert exact.schema.field("v").type == pa.float64()


def test_the_spec_of_a_long_and_a_double_is_decided_by_the_values():
    """The spec of two batches (a long in one, a double in the other) follows their values, as
    the join does: a double when the longs fit one exactly, JSON when one does not (a double
    column would round it)."""
    double = _batch([{"_id": 2, "v": 0.5}], "2").data
    for long_, expected in ((Int64(2**60 + 1), (pa.string(), b"json")), (Int64(7), None)):
        longs = _batch([{"_id": 1, "v": long_}], "1").data
        spec = group_schema([longs.schema, double.schema], [longs, double])
        joined = concat_batches(
            [_batch([{"_id": 1, "v": long_}], "1"), _batch([{"_id": 2, "v": 0.5}], "2")]
        ).data.schema.field("v")
        assert _kind(spec.field("v")) == _kind(joined)
        assert _kind(joined) == (expected or (pa.float64(), b"double"))
    # without the values the fields alone give a double
    assert union_schema(longs.schema, double.schema).field("v").type == pa.float64()


def test_a_field_of_nulls_joins_as_the_other_field():
    """A flush whose documents hold only nulls in a field says nothing of its type: a Postgres
    target types that field as its existing column (``bson_type`` null kept), and the spec of
    it beside a flush of doubles is the doubles' field, not JSON (a jsonb column asked of a
    double precision one)."""
    nulls = decode_documents([{"v": None}]).table.schema.field("v")
    as_column = nulls.with_type(pa.float64())  # what the target's ``_typed`` makes of it
    doubles = decode_documents([{"v": 0.5}]).table.schema.field("v")
    for typeless in (nulls, as_column):
        assert common_field(typeless, doubles) == doubles
        assert common_field(doubles, typeless) == doubles
        first, second = pa.schema([typeless]), pa.schema([doubles])
        values = [
            pa.table({"v": pa.nulls(1, typeless.type)}, schema=first),
            pa.table({"v": [0.5]}, schema=second),
        ]
        assert group_schema([first, second], values).field("v") == doubles


def test_an_int_batch_joined_with_a_long_batch_says_long_in_the_group_and_its_spec():
    """Found by the property above: the group's spec kept the first batch's ``int``."""
    parts = [_batch([{"_id": 0, "a": 0}], "1"), _batch([{"_id": 1, "a": Int64(2**31)}], "2")]
    joined = concat_batches(parts)
    spec = group_schema([p.data.schema for p in parts], [p.data for p in parts])
    assert _kind(joined.data.schema.field("a")) == (pa.int64(), b"long")
    assert _kind(spec.field("a")) == (pa.int64(), b"long")
    assert _documents(joined) == [{"_id": 0, "a": 0}, {"_id": 1, "a": 2**31}]
