"""The Postgres target's COPY scan gives exactly what its cursor scan gives (same values, same
types, same text-carried columns), in key order and in chunks; a table sweep reads keys
through it, off the event loop."""

from __future__ import annotations

import datetime as dt

import psycopg
import pyarrow as pa

from syncengine.targets.base import TableSpec
from syncengine.targets.postgres import ddl
from syncengine.targets.postgres.copyscan import scan_copy, vectorized
from syncengine.targets.postgres.read import scan
from tests.integration.targets.conftest import run

SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64()),
        pa.field("small", pa.int16()),
        pa.field("name", pa.string()),
        pa.field("ref", pa.string()),
        pa.field("addr", pa.string()),
        pa.field("ok", pa.bool_()),
        pa.field("day", pa.date32()),
        pa.field("at", pa.timestamp("us", tz="UTC")),
        pa.field("local", pa.timestamp("us")),
        pa.field("num", pa.int32()),
        pa.field("price", pa.decimal128(12, 2)),
    ]
)


def _create(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS public.cs")
        conn.execute(
            "CREATE TABLE public.cs (id bigint PRIMARY KEY, small smallint, name text, "
            "ref uuid, addr inet, ok boolean, day date, at timestamptz, local timestamp, "
            "num integer, price numeric(12,2))"
        )
        conn.execute(
            "INSERT INTO public.cs VALUES "
            "(3, 1, 'a,b \"q\"\nline', '0b5d7c1e-8f8a-4c47-9a43-6f2f1f2b9a11', '10.0.0.1', "
            " true, '2026-01-02', '2026-01-02 03:04:05.678901+00', '2026-01-02 03:04:05', -7, 1.5),"
            "(1, NULL, '', NULL, '::1', false, 'infinity', '-infinity', '0044-03-15 BC', NULL, "
            " 'NaN'),"
            "(2, -32768, NULL, NULL, NULL, NULL, '0001-01-01 BC', NULL, NULL, 2147483647, NULL)"
        )
        conn.execute(
            "INSERT INTO public.cs (id, name) SELECT i, 'n' || i FROM generate_series(4, 250) i"
        )


async def _both(dsn: str, chunk: int) -> tuple[list[pa.Table], list[pa.Table], bool]:
    async with await psycopg.AsyncConnection.connect(dsn) as conn:
        columns = await ddl.existing_columns(conn, "public", "cs")
    assert columns is not None
    spec = TableSpec("cs", ("id",), SCHEMA)
    copied = [t async for t in scan_copy(dsn, "public", spec, columns, chunk)]
    fetched = [t async for t in scan(dsn, "public", spec, columns, chunk)]
    return copied, fetched, vectorized(list(SCHEMA), columns)


def test_copy_scan_matches_cursor_scan(pg_target_dsn):
    _create(pg_target_dsn)
    copied, fetched, fits = run(_both(pg_target_dsn, 100))
    assert fits
    assert [t.num_rows for t in copied] == [100, 100, 50]
    assert [t.num_rows for t in fetched] == [100, 100, 50]
    for mine, theirs in zip(copied, fetched, strict=True):  # a chunk's types follow its values
        assert mine.schema == theirs.schema
        assert mine.combine_chunks().equals(theirs.combine_chunks())  # no pylist: infinity dates
    # numeric NaN: the chunk holding it carries the column as text, as the cursor scan does
    assert copied[0].schema.field("price").metadata[b"pg_type"] == b"numeric(12,2)"
    assert copied[1].schema.field("price").type == pa.decimal128(12, 2)
    whole = pa.concat_tables([t.drop_columns(["price"]) for t in copied])
    assert whole.column("id").to_pylist() == list(range(1, 251))
    first = whole.slice(0, 3).select(["name", "small", "ok", "ref", "addr"]).to_pylist()
    assert first[2]["name"] == 'a,b "q"\nline' and first[0]["name"] == ""
    assert first[1]["name"] is None and first[1]["small"] == -32768
    assert [r["ok"] for r in first] == [False, None, True]
    assert first[2]["ref"] == "0b5d7c1e-8f8a-4c47-9a43-6f2f1f2b9a11"
    assert [r["addr"] for r in first] == ["::1", None, "10.0.0.1"]
    at = whole.column("at").slice(2, 1).to_pylist()
    assert at == [dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)]


def test_copy_scan_of_an_empty_table_yields_one_empty_part(pg_target_dsn):
    _create(pg_target_dsn)
    with psycopg.connect(pg_target_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM public.cs")
    copied, fetched, _ = run(_both(pg_target_dsn, 100))
    assert fetched == []
    assert [t.num_rows for t in copied] == [0]
    assert copied[0].schema.names == SCHEMA.names


def test_types_without_a_plain_cast_keep_the_cursor_scan():
    assert not vectorized([pa.field("r", pa.float64())], {"r": "double precision"})
    assert not vectorized([pa.field("b", pa.binary())], {"b": "bytea"})
    # numeric carries NaN as text: restored like the cursor scan restores it
    assert vectorized([pa.field("p", pa.decimal128(12, 2))], {"p": "numeric(12,2)"})
    assert vectorized([pa.field("k", pa.int64())], {"k": "bigint"})
