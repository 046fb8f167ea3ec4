"""A typed Mongo column as extended JSON reads as the JSON a conflict's batch carries.

The reference is the JSON-carried path itself: each value decoded back to BSON
(``column_values``) and written by ``bson_arrow.to_json``. The column-at-a-time conversions
must give the same JSON value (text may differ where JSON does not: ``1`` and ``1.0``)."""

from __future__ import annotations

import datetime as dt
import json
import math

import pyarrow as pa
from bson import Int64, ObjectId
from hypothesis import given
from hypothesis import strategies as st

from syncengine.codecs.arrow_bson import column_values
from syncengine.codecs.bson_arrow import build, to_json
from syncengine.codecs.bson_json import json_text, needs_json
from syncengine.codecs.bson_types import infer_column


def _typed(values: list[object]) -> tuple[pa.Field, pa.Array]:
    """The column a batch holding only ``values`` carries (as the Mongo source builds it)."""
    array, field = build("f", infer_column(values), values)
    return field, array


def _reference(field: pa.Field, array: pa.Array) -> list[object]:
    return [None if v is None else json.loads(to_json(v)) for v in column_values(field, array)]


def _loaded(text: pa.ChunkedArray) -> list[object]:
    return [None if v is None else json.loads(v) for v in text.to_pylist()]


def _check(values: list[object]) -> None:
    field, array = _typed(values)
    assert needs_json(field)
    got = _loaded(json_text(field, array))
    assert got == _reference(field, array)


_text = st.text(alphabet=st.characters(exclude_characters="\x00"), max_size=12)


@given(st.lists(st.one_of(st.none(), _text), min_size=1))
def test_strings(values):
    if any(v is not None for v in values):
        _check(values)


@given(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1))
def test_ints(values):
    _check(values)


@given(st.lists(st.integers(-(2**53), 2**53), min_size=1))
def test_longs(values):
    _check([Int64(v) for v in values])


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1))
def test_doubles(values):
    _check(values)


@given(st.lists(st.booleans(), min_size=1))
def test_booleans(values):
    _check(values)


def test_object_ids_dates_and_non_finite_doubles():
    _check([ObjectId(), None, ObjectId()])
    _check([dt.datetime(2020, 1, 2, 3, 4, 5, 6000), dt.datetime(1960, 5, 6)])
    field, array = _typed([1.5, math.nan, math.inf, -math.inf])
    assert json_text(field, array).to_pylist() == [
        "1.5",
        '{"$numberDouble": "NaN"}',
        '{"$numberDouble": "Infinity"}',
        '{"$numberDouble": "-Infinity"}',
    ]


def test_small_longs_are_canonical_and_strings_quoted():
    field, array = _typed([Int64(5), Int64(2**40)])
    assert json_text(field, array).to_pylist() == ['{"$numberLong": "5"}', str(2**40)]
    field, array = _typed(["4", 'say "hi"\n'])
    assert _loaded(json_text(field, array)) == ["4", 'say "hi"\n']


def test_json_and_documents_are_left_as_they_are():
    for values in ([1, "a"], [{"a": 1}], [[1, 2]]):
        field, _ = _typed(values)
        assert not needs_json(field)
