"""Output shapes: nested targets, flatten for table targets, metadata passing through."""

from __future__ import annotations

import json

import polars as pl
import pyarrow as pa
from syncengine.mappings import compile_mapping

from syncengine.changes import ChangeBatch
from syncengine.config.models import MappingConfig

ADDRESS = pa.struct(
    [
        pa.field("city", pa.string(), metadata={"bson_type": "string"}),
        pa.field("geo", pa.struct([("lat", pa.float64()), ("lon", pa.float64())])),
    ]
)
DOCS = pa.schema(
    [
        pa.field("_id", pa.string(), metadata={"bson_type": "objectId"}),
        pa.field("name", pa.string(), metadata={"bson_type": "string"}),
        pa.field("address", ADDRESS, metadata={"bson_type": "object"}),
        pa.field("tags", pa.list_(pa.string()), metadata={"bson_type": "array"}),
    ]
)
ROWS = [
    {
        "_id": "65a000000000000000000001",
        "name": "Ann",
        "address": {"city": "Oslo", "geo": {"lat": 59.9, "lon": 10.7}},
        "tags": ["a", "b"],
    },
    {"_id": "65a000000000000000000002", "name": "Bo", "address": None, "tags": None},
]


def docs_batch(ops=("c", "c"), unsent=None) -> ChangeBatch:
    return ChangeBatch.build(
        "customers",
        pa.Table.from_pylist(ROWS, schema=DOCS),
        ops=list(ops),
        positions=["1", "2"],
        key=["_id"],
        unsent=unsent,
    )


def test_flatten_turns_documents_into_parent_child_columns_and_lists_into_json() -> None:
    m = MappingConfig(source="customers", flatten=True)
    compiled = compile_mapping("crm", m, DOCS, ("_id",))
    out = compiled.apply(docs_batch()).batch
    assert out.data_columns == [
        "_id",
        "name",
        "address_city",
        "address_geo_lat",
        "address_geo_lon",
        "tags",
    ]
    frame = pl.from_arrow(out.rows)
    assert frame.row(0) == ("65a000000000000000000001", "Ann", "Oslo", 59.9, 10.7, '["a","b"]')
    assert frame.row(1) == ("65a000000000000000000002", "Bo", None, None, None, None)
    schema = compiled.target_schema
    assert schema.field("_id").metadata == {b"bson_type": b"objectId"}
    assert schema.field("address_city").metadata == {b"bson_type": b"string"}
    assert schema.field("tags").metadata == {b"pg_type": b"jsonb"}
    assert json.loads(frame["tags"][0]) == ["a", "b"]


def test_flatten_unsent_parent_marks_every_child() -> None:
    m = MappingConfig(source="customers", flatten=True)
    batch = docs_batch(ops=("u", "u"), unsent={"address": [True, False]})
    frame = pl.from_arrow(compile_mapping("crm", m, DOCS, ("_id",)).apply(batch).batch.data)
    assert frame["_unsent.address_city"].to_list() == [True, False]
    assert frame["_unsent.address_geo_lat"].to_list() == [True, False]
    assert frame["address_city"].to_list() == [None, None]


def test_dotted_targets_build_documents_and_read_nested_sources() -> None:
    m = MappingConfig(
        source="customers",
        fields={
            "_id": "_id",
            "profile.name": "upper(name)",
            "profile.place.city": "address.city",
            "profile.place.lat": "address.geo.lat",
            "first_tag": "tags->>0",
        },
    )
    compiled = compile_mapping("crm", m, DOCS, ("_id",))
    frame = pl.from_arrow(compiled.apply(docs_batch()).batch.rows)
    assert frame.to_dicts()[0] == {
        "_id": "65a000000000000000000001",
        "profile": {"name": "ANN", "place": {"city": "Oslo", "lat": 59.9}},
        "first_tag": "a",
    }
    assert frame.to_dicts()[1]["profile"] == {"name": "BO", "place": {"city": None, "lat": None}}
    # a renamed pass-through keeps the source's metadata
    assert compiled.target_schema.field("_id").metadata == {b"bson_type": b"objectId"}


def test_nested_unsent_mask_names_the_dotted_field() -> None:
    m = MappingConfig(source="customers", fields={"_id": "_id", "p.city": "address.city"})
    batch = docs_batch(ops=("u", "u"), unsent={"address": [False, True]})
    frame = pl.from_arrow(compile_mapping("crm", m, DOCS, ("_id",)).apply(batch).batch.data)
    assert frame["_unsent.p.city"].to_list() == [False, True]


def test_dotted_targets_then_flatten_for_a_table() -> None:
    m = MappingConfig(
        source="customers", flatten=True, fields={"_id": "_id", "c.name": "name", "c.n": "1"}
    )
    compiled = compile_mapping("crm", m, DOCS, ("_id",))
    out = compiled.apply(docs_batch()).batch
    assert out.data_columns == ["_id", "c_name", "c_n"]


def test_missing_document_fields_read_as_null() -> None:
    m = MappingConfig(source="customers", fields={"_id": "_id", "v": "coalesce(vip, false)"})
    compiled = compile_mapping("crm", m, DOCS, ("_id",))
    frame = pl.from_arrow(compiled.apply(docs_batch()).batch.rows)
    assert frame["v"].to_list() == [False, False]


def test_flatten_exclude_takes_flat_or_dotted_names() -> None:
    m = MappingConfig(
        source="customers", flatten=True, exclude=["tags", "address.geo_lat", "address_geo_lon"]
    )
    compiled = compile_mapping("crm", m, DOCS, ("_id",))
    assert compiled.target_schema.names == ["_id", "name", "address_city"]


def test_one_mapping_gives_the_same_rows_for_json_text_and_documents() -> None:
    """Postgres sends jsonb as text, Mongo sends sub-documents: the mapping reads both."""
    m = MappingConfig(
        source="customers",
        fields={"_id": "_id", "city": "address->>'city'", "c2": "upper(address.city)"},
        filter="address->>'city' <> 'Bergen'",
    )
    texts = pa.schema(
        [pa.field("_id", pa.string()), pa.field("address", pa.string(), {"pg_type": "jsonb"})]
    )
    rows = [
        {"_id": "1", "address": '{"city": "Oslo", "geo": {"lat": 59.9, "lon": 10.7}}'},
        {"_id": "2", "address": '{"city": "Bergen"}'},
        {"_id": "3", "address": None},
    ]
    as_text = ChangeBatch.build(
        "customers", pa.Table.from_pylist(rows, texts), ops=["r"] * 3, positions=["1", "2", "3"]
    )
    docs = [{**r, "address": json.loads(r["address"]) if r["address"] else None} for r in rows]
    doc_schema = pa.schema([pa.field("_id", pa.string()), pa.field("address", ADDRESS)])
    as_docs = ChangeBatch.build(
        "customers",
        pa.Table.from_pylist(docs, doc_schema),
        ops=["r"] * 3,
        positions=["1", "2", "3"],
    )
    outs = [
        pl.from_arrow(compile_mapping("crm", m, b.rows.schema, ("_id",)).apply(b).batch.rows)
        for b in (as_text, as_docs)
    ]
    assert outs[0].rows() == outs[1].rows() == [("1", "Oslo", "OSLO")]
