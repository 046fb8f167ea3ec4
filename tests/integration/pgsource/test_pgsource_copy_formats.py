"""Which bulk read is fastest into Arrow: COPY CSV + pyarrow.csv (what snapshots use), binary
COPY decoded by psycopg, or a plain SELECT. All three must give the same values.

Marked slow (``--runslow``); prints the timings recorded in docs/postgres-source.md.
"""

from __future__ import annotations

import time

import psycopg
import pyarrow as pa
import pytest

from syncengine.pgsession import PINNED_OPTIONS
from syncengine.sources.postgres.chunks import csv_to_text_columns, read_batch, table_shape
from tests.integration.pgsource.pgsource_helpers import execute

ROWS = 200_000
COLUMNS = ("id", "amount", "label", "at", "flag")


@pytest.mark.slow
def test_copy_formats_agree_and_csv_is_fastest(pg_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE f (id bigint PRIMARY KEY, amount numeric(12,2), label text, "
        "at timestamptz, flag boolean)",
        f"INSERT INTO f SELECT g, g / 100.0, 'label ' || g, "
        f"'2024-01-01+00'::timestamptz + g * interval '1 second', g % 2 = 0 "
        f"FROM generate_series(1, {ROWS}) g",
    )
    select = "SELECT id, amount, label, at, flag FROM f ORDER BY id"
    timings = {}
    with psycopg.connect(pg_dsn, options=PINNED_OPTIONS) as conn:
        started = time.perf_counter()
        raw = bytearray()
        with conn.cursor().copy(f"COPY ({select}) TO STDOUT (FORMAT csv)") as copy:
            for data in copy:
                raw += data
        text = csv_to_text_columns(bytes(raw), COLUMNS)
        import asyncio

        async def shape():
            async with await psycopg.AsyncConnection.connect(pg_dsn) as aconn:
                return await table_shape(aconn, "public.f", ("id",))

        csv_table = read_batch(asyncio.run(shape()), text, "0", {}).rows
        timings["COPY csv → pyarrow.csv → vectorized casts"] = time.perf_counter() - started

        started = time.perf_counter()
        with conn.cursor().copy(f"COPY ({select}) TO STDOUT (FORMAT binary)") as copy:
            copy.set_types(["int8", "numeric", "text", "timestamptz", "bool"])
            columns = list(zip(*copy.rows(), strict=True))
        binary_table = pa.table(
            {
                name: pa.array(values, csv_table.schema.field(name).type)
                for name, values in zip(COLUMNS, columns, strict=True)
            }
        )
        timings["COPY binary → psycopg rows → pa.array"] = time.perf_counter() - started

        started = time.perf_counter()
        rows = conn.execute(select).fetchall()
        select_table = pa.Table.from_pylist(
            [dict(zip(COLUMNS, r, strict=True)) for r in rows], schema=binary_table.schema
        )
        timings["SELECT → psycopg rows → pa.Table.from_pylist"] = time.perf_counter() - started

    for name, seconds in timings.items():
        print(f"\n{name}: {seconds:.2f}s ({ROWS / seconds:,.0f} rows/s)")
    plain = csv_table.cast(binary_table.schema)
    assert plain.equals(binary_table) and plain.equals(select_table)
    fastest = min(timings, key=timings.get)
    assert fastest.startswith("COPY csv")
