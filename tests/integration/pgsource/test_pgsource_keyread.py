"""A table sweep's read of a Postgres table: the source key and what the filter reads, and
the target keys the cut-down mapping computes from them equal the whole mapping's."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pyarrow as pa

from syncengine.config.models import MappingConfig
from syncengine.runtime.keyread import key_reading, text_keys
from tests.integration.pgsource.pgsource_helpers import execute, make_source


def _keys(pg_dsn: str, mapping: MappingConfig):
    async def scenario():
        source = make_source(pg_dsn, ["kr"], max_rows=1000)
        pipeline = SimpleNamespace(name="p", source=source)
        reading = await key_reading(pipeline, "public.kr", 0, mapping)  # type: ignore[arg-type]
        assert reading is not None
        narrow = [reading.keys(b) async for b in source.scan("public.kr", reading.columns)]
        whole = [
            text_keys(reading.compiled.apply(b).batch.data, reading.compiled.key)
            async for b in source.scan("public.kr")
        ]
        await source.close()
        return reading, pa.concat_tables(narrow), pa.concat_tables(whole)

    return asyncio.run(scenario())


def test_sweep_reads_the_key_and_the_filter_columns_only(pg_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE kr (id int PRIMARY KEY, name text, status text, pad text, n int)",
        "INSERT INTO kr SELECT g, 'n' || g, CASE WHEN g % 3 = 0 THEN 'draft' ELSE 'ok' END, "
        "repeat('p', 50), g FROM generate_series(1, 40) g",
    )
    mapping = MappingConfig(
        source="public.kr",
        key=["ident"],
        fields={"ident": "id * 10", "label": "upper(name)", "total": "n / 2"},
        filter="status <> 'draft'",
    )
    reading, narrow, whole = _keys(pg_dsn, mapping)
    assert reading.columns == ("id", "status")
    assert reading.compiled.key == ("ident",)
    assert reading.compiled.target_schema.names == ["ident", "label", "total"]
    assert narrow.equals(whole)
    assert narrow.column("ident").to_pylist() == [str(g * 10) for g in range(1, 41) if g % 3]


def test_a_mapping_without_fields_reads_the_key_alone(pg_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE kr (id int PRIMARY KEY, name text, status text, pad text, n int)",
        "INSERT INTO kr SELECT g, 'n' || g, 'ok', 'p', g FROM generate_series(1, 5) g",
    )
    reading, narrow, whole = _keys(pg_dsn, MappingConfig(source="public.kr", exclude=["pad"]))
    assert reading.columns == ("id",)
    assert reading.compiled.target_schema.names == ["id", "name", "status", "n"]
    assert narrow.equals(whole) and narrow.num_rows == 5
