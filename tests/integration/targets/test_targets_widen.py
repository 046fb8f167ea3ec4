"""A schemaless source that sends a column as int first and as double later: the Postgres
target widens the column instead of truncating the fractions."""

from __future__ import annotations

import asyncio

import psycopg
import pyarrow as pa

from syncengine.changes import ChangeBatch
from syncengine.config.models import PostgresTargetConfig
from syncengine.targets.base import TableSpec, TableWrite
from syncengine.targets.postgres import PostgresTarget


def spec_of(amount: pa.DataType) -> TableSpec:
    return TableSpec("ledger", ("id",), pa.schema([("id", pa.int64()), ("amount", amount)]))


def write(spec: TableSpec, ids: list[int], amounts: list[object]) -> TableWrite:
    rows = pa.table({"id": ids, "amount": pa.array(amounts, spec.schema.field("amount").type)})
    batch = ChangeBatch.build(
        "ledger", rows, ops=["c"] * len(ids), positions=[str(i) for i in ids], key=["id"]
    )
    return TableWrite(spec, batch)


def test_integer_column_widens_for_fractions(pg_target_dsn):
    async def scenario():
        target = PostgresTarget("p", PostgresTargetConfig(type="postgres", dsn=pg_target_dsn))
        await target.open()
        try:
            ints = await target.ensure_table(spec_of(pa.int64()))
            await target.apply([write(ints, [1], [5])], None)
            floats = await target.ensure_table(spec_of(pa.float64()))
            await target.apply([write(floats, [2, 3], [0.01, 2.5])], None)
        finally:
            await target.close()

    asyncio.run(scenario())
    with psycopg.connect(pg_target_dsn) as conn:
        kind = conn.execute(
            "SELECT data_type FROM information_schema.columns WHERE table_name = 'ledger' "
            "AND column_name = 'amount'"
        ).fetchone()
        values = conn.execute("SELECT id, amount FROM ledger ORDER BY id").fetchall()
    assert kind == ("double precision",)
    assert values == [(1, 5.0), (2, 0.01), (3, 2.5)]
