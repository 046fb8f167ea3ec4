"""BSON ↔ Arrow: types, union schema, JSON fallback, missing vs null, round trips."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import bson
import pyarrow as pa
from bson import Binary, Decimal128, Int64, ObjectId, Regex
from bson.codec_options import CodecOptions
from hypothesis import given, settings
from hypothesis import strategies as st

from syncengine.codecs.bson_arrow import (
    arrow_to_documents,
    decode_documents,
    documents_to_arrow,
    missing_masks,
)

UTC = dt.UTC
STANDARD = CodecOptions(uuid_representation=bson.binary.UuidRepresentation.STANDARD)


def _meta(table: pa.Table, name: str) -> str:
    return table.schema.field(name).metadata[b"bson_type"].decode()


def test_every_bson_type_has_its_arrow_type_and_metadata():
    oid, uid = ObjectId(), uuid.uuid4()
    doc = {
        "_id": oid,
        "s": "x",
        "i": 1,
        "l": Int64(2),
        "d": 1.5,
        "dec": Decimal128("12.340"),
        "b": True,
        "t": dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        "bin": b"\x01",
        "u": Binary.from_uuid(uid),
        "n": None,
        "sub": {"a": 1},
        "arr": [1.5, 2],
    }
    table, warnings = documents_to_arrow([doc])
    assert warnings == []
    expected = {
        "_id": (pa.string(), "objectId"),
        "s": (pa.string(), "string"),
        "i": (pa.int32(), "int"),
        "l": (pa.int64(), "long"),
        "d": (pa.float64(), "double"),
        "dec": (pa.decimal128(38, 3), "decimal"),
        "b": (pa.bool_(), "bool"),
        "t": (pa.timestamp("ms", tz="UTC"), "date"),
        "bin": (pa.binary(), "binData"),
        "u": (pa.string(), "uuid"),
        "n": (pa.null(), "null"),
        "sub": (pa.struct([pa.field("a", pa.int32())]), "object"),
        "arr": (pa.list_(pa.float64()), "array"),
    }
    for name, (type_, bson_type) in expected.items():
        assert table.schema.field(name).type.equals(type_, check_metadata=False), name
        assert _meta(table, name) == bson_type
    row = table.to_pylist()[0]
    assert row["_id"] == str(oid) and row["u"] == str(uid) and row["dec"] == Decimal("12.340")
    assert row["arr"] == [1.5, 2.0]


def test_raw_bson_batches_decode_like_dicts():
    docs = [{"_id": i, "v": f"s{i}", "sub": {"k": [i]}} for i in range(5)]
    raw = b"".join(bson.encode(d) for d in docs)
    assert decode_documents([raw[: len(raw)]]).table.equals(decode_documents(docs).table)


def test_conflicts_fall_back_to_json_with_a_warning_per_path():
    docs = [
        {"_id": 1, "v": 1, "n": {"x": 1, "ok": "a"}, "l": [1]},
        {"_id": 2, "v": "one", "n": {"x": [1]}, "l": ["a"]},
    ]
    table, warnings = documents_to_arrow(docs)
    assert _meta(table, "v") == "json"
    assert table.column("v").to_pylist() == ["1", '"one"']
    # a conflict inside a field carries the whole top-level field as JSON (only top-level
    # metadata survives every stage), while the warning still names the exact path
    assert _meta(table, "n") == _meta(table, "l") == "json"
    assert table.schema.field("l").metadata[b"pg_type"] == b"jsonb"
    assert table.column("n").to_pylist() == ['{"x": 1, "ok": "a"}', '{"x": [1]}']
    assert table.column("l").to_pylist() == ["[1]", '["a"]']
    assert arrow_to_documents(table) == docs
    assert len(warnings) == 3 and any("n.x" in w for w in warnings)
    assert any("l[]" in w for w in warnings)


def test_numbers_widen_instead_of_conflicting():
    table, warnings = documents_to_arrow([{"a": 1, "b": 1}, {"a": Int64(5), "b": 2.5}])
    assert warnings == []
    assert table.schema.field("a").type == pa.int64()
    assert table.schema.field("b").type == pa.float64()


def test_missing_and_null_are_distinguished():
    docs = [{"_id": 1, "a": None}, {"_id": 2}, {"_id": 3, "a": 4}]
    masks = missing_masks(docs)
    assert set(masks) == {"a"}
    assert masks["a"].to_pylist() == [False, True, False]
    assert documents_to_arrow(docs)[0].column("a").to_pylist() == [None, None, 4]


def test_decimals_beyond_arrow_precision_stay_exact_text():
    table, _ = documents_to_arrow([{"d": Decimal128("1E+40")}, {"d": Decimal128("NaN")}])
    assert table.schema.field("d").type == pa.string()
    assert _meta(table, "d") == "decimal"
    back = arrow_to_documents(table)
    assert back[0]["d"] == Decimal128("1E+40")


def test_unsupported_types_and_empty_documents_become_json():
    table, warnings = documents_to_arrow([{"r": Regex("^a", "i"), "e": {}}])
    assert warnings == []
    assert _meta(table, "r") == "json" and _meta(table, "e") == "json"
    back = arrow_to_documents(table)[0]
    assert back["r"] == Regex("^a", "i") and back["e"] == {}


def test_arrow_to_documents_follows_pg_and_bson_metadata():
    uid = uuid.uuid4()
    oid = ObjectId()
    table = pa.table(
        {
            "_id": pa.array([str(oid)]),
            "u": pa.array([str(uid)]),
            "j": pa.array(['{"a": [1, {"b": null}]}']),
            "amount": pa.array([Decimal("12.50")], pa.decimal128(10, 2)),
            "big": pa.array([2**40], pa.int64()),
            "at": pa.array([dt.datetime(2024, 1, 1, 5)], pa.timestamp("us", tz="+02:00")),
            "day": pa.array([dt.date(2024, 1, 2)], pa.date32()),
            "tags": pa.array([["a", "b"]]),
            "sub": pa.array([{"x": 1, "y": "z"}]),
            "customer.email": pa.array(["a@b"]),
        }
    )
    schema = table.schema
    for name, meta in {
        "_id": {"bson_type": "objectId"},
        "u": {"pg_type": "uuid"},
        "j": {"pg_type": "jsonb"},
    }.items():
        i = schema.get_field_index(name)
        schema = schema.set(i, schema.field(name).with_metadata(meta))
    doc = arrow_to_documents(table.cast(schema))[0]
    assert doc["_id"] == oid
    assert doc["u"] == Binary.from_uuid(uid) and doc["u"].subtype == 4
    assert doc["j"] == {"a": [1, {"b": None}]}
    assert doc["amount"] == Decimal128("12.50")
    assert isinstance(doc["big"], Int64)
    assert doc["at"] == dt.datetime(2024, 1, 1, 5, tzinfo=UTC) and doc["at"].tzinfo == UTC
    assert doc["day"] == dt.datetime(2024, 1, 2, tzinfo=UTC)
    assert doc["tags"] == ["a", "b"] and doc["sub"] == {"x": 1, "y": "z"}
    assert doc["customer.email"] == "a@b"  # dotted names are not split here
    bson.encode(doc, codec_options=STANDARD)  # everything is BSON-encodable


def test_omit_masks_leave_fields_out():
    table = pa.table({"_id": [1, 2], "a": [None, 5]})
    docs = arrow_to_documents(table, omit={"a": [True, False]})
    assert docs == [{"_id": 1}, {"_id": 2, "a": 5}]


# -- property: BSON → Arrow → BSON is the identity on documents of one shape ---------------

scalars = st.one_of(
    st.text(max_size=5),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(2**31, 2**62).map(Int64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.decimals(
        allow_nan=False, allow_infinity=False, places=3, min_value=-(10**9), max_value=10**9
    ).map(lambda d: Decimal128(d)),
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1)).map(
        lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000, tzinfo=UTC)
    ),
    st.binary(max_size=4),
    st.uuids().map(Binary.from_uuid),
    st.builds(ObjectId),
)


@settings(max_examples=120, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3, unique=True),
    st.data(),
)
def test_round_trip_of_same_shaped_documents(names, data):
    kinds = {name: data.draw(scalars) for name in names}  # one value decides each type
    docs = []
    for i in range(data.draw(st.integers(1, 4))):
        doc = {"_id": i}
        for name, sample in kinds.items():
            value = data.draw(st.one_of(st.just(sample), st.none()))
            doc[name] = value
        doc["nested"] = {"inner": [doc.get(names[0])]}
        docs.append(doc)
    decoded = decode_documents(docs)
    back = arrow_to_documents(decoded.table, omit=decoded.missing)
    # the original documents and the round trip encode to the same BSON (UUIDs as subtype 4)
    for original, again in zip(docs, back, strict=True):
        assert bson.encode(again, codec_options=STANDARD) == bson.encode(
            original, codec_options=STANDARD
        ), (original, again)


@settings(max_examples=120, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.decimals(allow_nan=False, allow_infinity=False).filter(
                lambda d: len(d.as_tuple().digits) <= 34 and -6000 < d.as_tuple().exponent < 6000
            ),
        ),
        min_size=1,
        max_size=5,
    )
)
def test_decimal128_columns_are_exact(values):
    bson_values = [None if v is None else Decimal128(v) for v in values]
    table, _ = documents_to_arrow([{"d": v} for v in bson_values])
    column = table.column("d")
    assert _meta(table, "d") == ("null" if all(v is None for v in values) else "decimal")
    got = column.to_pylist()
    for original, value in zip(values, got, strict=True):
        if original is None:
            assert value is None
        else:
            assert Decimal(str(value)) == Decimal128(original).to_decimal()


_LEAVES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=3),
    st.booleans(),
    st.just(Decimal128("1.5")),
    st.just(dt.datetime(2024, 1, 1, tzinfo=dt.UTC)),
)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abc"), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_VALUES, max_size=6))
def test_column_inference_equals_the_union_of_each_value(values) -> None:
    """``infer_column`` infers sub-documents and arrays over the whole column at once; that
    must be exactly the union (``unify``) of every value's own type."""
    from syncengine.codecs.bson_types import NULL, infer, infer_column, unify

    expected = NULL
    for value in values:
        expected = unify(expected, infer(value))
    assert infer_column(values) == expected


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.dictionaries(st.sampled_from("abc"), _LEAVES, max_size=3)),
        max_size=6,
    )
)
def test_field_columns_transpose_documents_of_one_shape_or_decline(values) -> None:
    """The fast path of decoding: documents with the same fields (in any order) become one
    column per field, in first-seen order, None where a value is None; any other mix is
    declined (the caller then walks the documents one by one)."""
    from syncengine.codecs.bson_types import field_columns

    got = field_columns(values)
    docs = [v for v in values if v is not None]
    names = list(dict.fromkeys(name for doc in docs for name in doc))
    if any(set(doc) != set(names) for doc in docs):
        assert got is None
        return
    assert got is not None
    assert list(got) == names
    assert got == {n: [None if v is None else v[n] for v in values] for n in names}
