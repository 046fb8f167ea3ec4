"""Mapping expressions over columns a batch carries as Postgres text (time '24:00', arrays
with two dimensions, NaN in numeric(p,s)): read natively, or the row is a dead letter."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pyarrow as pa
from syncengine.mappings import compile_mapping

from syncengine.changes import ChangeBatch
from syncengine.config.models import MappingConfig

TEXT_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), metadata={"pg_type": "bigint"}),
        pa.field("t", pa.string(), metadata={"pg_type": "time without time zone"}),
        pa.field("arr", pa.string(), metadata={"pg_type": "integer[]"}),
        pa.field("amount", pa.string(), metadata={"pg_type": "numeric(10,2)"}),
    ]
)
ROWS = [
    {"id": 1, "t": "24:00:00", "arr": "{1,2}", "amount": "1.50"},
    {"id": 2, "t": "13:30:00", "arr": "{{1,2},{3,4}}", "amount": "NaN"},
    {"id": 3, "t": "09:00:00", "arr": None, "amount": "2.00"},
]


HOUR = "extract(hour from t) >= 12"


def text_batch(ops: list[str] | None = None) -> ChangeBatch:
    table = pa.Table.from_pylist(ROWS, schema=TEXT_SCHEMA)
    ops = ops or ["r"] * len(ROWS)
    return ChangeBatch.build(
        "public.t", table, ops=ops, positions=[f"{i:04d}" for i in range(len(ROWS))], key=["id"]
    )


def run(ops: list[str] | None = None, **kw):
    m = MappingConfig(source="public.t", **kw)
    return compile_mapping("p", m, TEXT_SCHEMA, ("id",)).apply(text_batch(ops))


def test_filter_over_time_reads_times_and_sets_24_00_aside():
    result = run(filter=HOUR)
    rows = result.batch.data.select(["id", "t"]).to_pylist()
    assert rows == [{"id": 2, "t": dt.time(13, 30)}]  # compared as times, not text
    (letter,) = result.dead_letters
    assert letter.stage == "mapping"
    assert "column t holds '24:00:00'" in letter.reason
    assert "time without time zone" in letter.reason and "filter" in letter.reason
    assert '"id": 1' in letter.payload


def test_computed_fields_over_array_and_numeric_set_only_their_rows_aside():
    result = run(fields={"id": "id", "double": "amount * 2", "first": "arr is null"})
    data = result.batch.data.to_pylist()
    assert [(r["id"], r["double"]) for r in data] == [(1, Decimal("3.00")), (3, Decimal("4.00"))]
    (letter,) = result.dead_letters  # row 2: NaN and a two-dimensional array, one letter
    assert "column arr holds '{{1,2},{3,4}}'" in letter.reason
    assert "fields.first" in letter.reason


def test_pass_through_keeps_text_untouched():
    for kw in ({}, {"exclude": ["arr"]}, {"fields": {"id": "id", "when": "t"}}):
        result = run(**kw)
        assert not result.dead_letters
        out = result.batch.data
        column = "when" if "fields" in kw else "t"
        assert out.column(column).to_pylist() == ["24:00:00", "13:30:00", "09:00:00"]
        assert out.schema.field(column).metadata[b"pg_type"] == b"time without time zone"


def test_deletes_carry_only_their_key():
    result = run(filter=HOUR, ops=["d", "d", "d"])
    assert not result.dead_letters
    assert result.batch.data.column("id").to_pylist() == [1, 2, 3]
