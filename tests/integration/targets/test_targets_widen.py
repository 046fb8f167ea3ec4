"""A schemaless source that sends a column as int first and as double later, or the reverse:
the Postgres target widens the column instead of truncating the fractions, and to numeric
where a double would round an integer (beyond 2^53)."""

from __future__ import annotations

import asyncio

import psycopg
import pyarrow as pa

from syncengine.changes import ChangeBatch
from syncengine.config.models import PostgresTargetConfig
from syncengine.targets.base import TableSpec, TableWrite
from syncengine.targets.postgres import PostgresTarget
from tests.integration.pgcolumns import stored_column


def spec_of(amount: pa.DataType) -> TableSpec:
    return TableSpec("ledger", ("id",), pa.schema([("id", pa.int64()), ("amount", amount)]))


def write(spec: TableSpec, ids: list[int], amounts: list[object]) -> TableWrite:
    rows = pa.table({"id": ids, "amount": pa.array(amounts, spec.schema.field("amount").type)})
    batch = ChangeBatch.build(
        "ledger", rows, ops=["c"] * len(ids), positions=[str(i) for i in ids], key=["id"]
    )
    return TableWrite(spec, batch)


BIG = 2**60 + 1  # 2**60 as a double


def _apply_in_turn(dsn: str, steps: list[tuple[pa.DataType, list[int], list[object]]], **config):
    async def scenario():
        target = PostgresTarget("p", PostgresTargetConfig(type="postgres", dsn=dsn, **config))
        await target.open()
        try:
            for kind, ids, amounts in steps:
                spec = await target.ensure_table(spec_of(kind))
                await target.apply([write(spec, ids, amounts)], None)
        finally:
            await target.close()

    asyncio.run(scenario())


def _stored(dsn: str) -> tuple[str, dict[int, str]]:
    return stored_column(dsn, "ledger", "amount", "id")


def test_integer_column_beyond_a_double_widens_to_numeric(pg_target_dsn):
    _apply_in_turn(
        pg_target_dsn,
        [(pa.int64(), [1, 2], [BIG, -BIG]), (pa.float64(), [3, 4], [0.1, 2.5])],
    )
    assert _stored(pg_target_dsn) == (
        "numeric",
        {1: str(BIG), 2: str(-BIG), 3: "0.1", 4: "2.5"},
    )


def test_double_column_sent_an_integer_beyond_it_becomes_numeric(pg_target_dsn):
    _apply_in_turn(
        pg_target_dsn,
        [
            (pa.float64(), [1, 2], [0.1, 1.5e-300]),
            (pa.int64(), [3], [2**53]),  # exact in a double: the column stays
        ],
    )
    assert _stored(pg_target_dsn)[0] == "double precision"
    _apply_in_turn(pg_target_dsn, [(pa.int64(), [4, 5], [7, -BIG])])
    kind, values = _stored(pg_target_dsn)
    assert kind == "numeric"
    assert values[5] == str(-BIG)
    assert values[1] == "0.1"
    assert float(values[2]) == 1.5e-300
    assert values[3] == str(2**53)


def test_a_real_column_the_user_made_becomes_numeric_for_an_int_beyond_2_to_24(pg_target_dsn):
    with psycopg.connect(pg_target_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (id bigint PRIMARY KEY, amount real)")
    _apply_in_turn(pg_target_dsn, [(pa.int32(), [1, 2], [2**24, 2**24 + 1])])
    assert _stored(pg_target_dsn) == ("numeric", {1: str(2**24), 2: str(2**24 + 1)})


def test_without_add_the_users_column_type_is_kept(pg_target_dsn):
    with psycopg.connect(pg_target_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (id bigint PRIMARY KEY, amount double precision)")
    _apply_in_turn(pg_target_dsn, [(pa.int64(), [1], [BIG])], on_schema_change="fail")
    assert _stored(pg_target_dsn)[0] == "double precision"


def test_integer_column_widens_for_fractions(pg_target_dsn):
    _apply_in_turn(pg_target_dsn, [(pa.int64(), [1], [5]), (pa.float64(), [2, 3], [0.01, 2.5])])
    kind, values = _stored(pg_target_dsn)
    assert kind == "double precision"
    assert {k: float(v) for k, v in values.items()} == {1: 5.0, 2: 0.01, 3: 2.5}


def test_a_default_the_column_refuses_is_left_out(pg_target_dsn, caplog):
    """A column added with the source's value for its older rows (``pg_missing``) that the
    target's type refuses is added without it, with a warning; the write goes on."""
    _apply_in_turn(pg_target_dsn, [(pa.int64(), [1], [5])])
    spec = TableSpec(
        "ledger",
        ("id",),
        pa.schema(
            [
                ("id", pa.int64()),
                ("amount", pa.int64()),
                pa.field("late", pa.int32(), metadata={"pg_type": "integer", "pg_missing": "x"}),
                pa.field("kept", pa.int32(), metadata={"pg_type": "integer", "pg_missing": "7"}),
            ]
        ),
    )

    async def scenario():
        target = PostgresTarget("p", PostgresTargetConfig(type="postgres", dsn=pg_target_dsn))
        await target.open()
        try:
            await target.ensure_table(spec)
        finally:
            await target.close()

    asyncio.run(scenario())
    with psycopg.connect(pg_target_dsn) as conn:
        assert conn.execute("SELECT late, kept FROM ledger").fetchall() == [(None, 7)]
    assert "late: added as a plain column; the target refused the value" in caplog.text
    assert "older rows hold ('x'; NULL here)" in caplog.text


def test_a_declared_double_on_a_bigint_holding_big_longs_becomes_numeric(pg_target_dsn):
    """A Postgres source's ``bigint`` altered to ``double precision``: the declared type alone
    would make the column a double, which rounds the stored 2^60 + 1."""
    _apply_in_turn(pg_target_dsn, [(pa.int64(), [1], [BIG])])
    declared = pa.field("amount", pa.float64(), metadata={"pg_type": "double precision"})
    spec = TableSpec("ledger", ("id",), pa.schema([pa.field("id", pa.int64()), declared]))

    async def scenario():
        target = PostgresTarget("p", PostgresTargetConfig(type="postgres", dsn=pg_target_dsn))
        await target.open()
        try:
            ensured = await target.ensure_table(spec)
            await target.apply([write(ensured, [2], [0.5])], None)
        finally:
            await target.close()

    asyncio.run(scenario())
    assert _stored(pg_target_dsn) == ("numeric", {1: str(BIG), 2: "0.5"})
