# ruff: noqa: E501  (reference rows and expressions read best one per line)
"""PostgreSQL as the reference: expressions and pushed-down filters give what Polars gives."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

import polars as pl
import psycopg
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from syncengine.mappings import to_postgres_where
from syncengine.mappings.compiler import ExprCompiler

from tests.unit.mappings.mappings_filters import predicate, rows
from tests.unit.mappings.test_mappings_pushdown import polars_ids

UTC = dt.UTC
ROWS = [
    (1, 1, 2, 1.5, "Hello", "12", True, dt.datetime(2024, 5, 17, 13, 45, 12, 500000, tzinfo=UTC), '{"a":{"b":[1,2]},"c":"x"}'),
    (2, -7, 3, -2.5, " x ", "7", False, dt.datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC), None),
    (3, None, 0, None, None, None, None, None, "{}"),
    (4, 10, 4, 0.25, "abc", " 7 ", True, dt.datetime(2024, 2, 29, tzinfo=UTC), '{"c":5,"a":{"b":[3]}}'),
]  # fmt: skip
COLUMNS = ["id", "a", "b", "f", "s", "n", "flag", "ts", "j"]
EXPRESSIONS = [
    "a + b", "a - b * 2", "a / b", "a % b", "a / 2.0", "-a", "abs(a)", "round(f::numeric)", "round(f::numeric, 1)",
    "floor(f)", "ceil(f)", "a > 1", "a <> 1", "a = 1 or flag", "a = 1 and flag", "not flag",
    "a is null", "flag is true", "flag is not false", "a is not distinct from 1",
    "a in (1, 10)", "a not in (1, 10)", "a in (1, null)", "a between 0 and 5",
    "s like 'H%'", "s like '_b%'", "s not like '%l%'", "s ilike 'h%'", "s ~ '^[a-z]+$'",
    "case when a > 2 then 'big' when a < 0 then 'neg' else 'small' end",
    "case a when 1 then 'one' end", "coalesce(a, b, 0)", "nullif(a, 1)", "greatest(a, b)",
    "least(a, b)", "lower(s)", "upper(s)", "trim(s)", "ltrim(s)", "rtrim(s)", "length(s)",
    "s || '!'", "s || a", "concat(s, '-', a)", "concat_ws('/', s, a)", "substring(s, 2, 3)",
    "substring(s from 0 for 3)", "substr(s, 3)", "replace(s, 'l', 'L')", "left(s, 2)",
    "right(s, 2)", "a::text", "n::int", "f::int", "a::numeric(6,2)", "flag::text",
    "s::varchar(2)", "date_trunc('month', ts)", "date_trunc('hour', ts)",
    "date_trunc('week', ts)", "extract(year from ts)", "extract(dow from ts)",
    "extract(doy from ts)", "extract(second from ts)", "extract(epoch from ts)",
    "date_part('quarter', ts)", "ts > '2024-01-01'", "ts + interval '1 day'", "ts::date",
    "j->'a'->>'b'", "j->>'c'", "j #>> '{a,b,1}'", "md5(s)",
    "encode(sha256(convert_to(s, 'UTF8')), 'hex')",
]  # fmt: skip
# Postgres spelling -> ours, where they differ (our round() rounds like numeric's, half away
# from zero, for floats too; our sha256() takes and returns text).
OURS = {
    "encode(sha256(convert_to(s, 'UTF8')), 'hex')": "sha256(s)",
    "round(f::numeric)": "round(f)",
    "round(f::numeric, 1)": "round(f, 1)",
}


def _normal(value: object) -> object:
    """Compare across drivers: numbers as rounded floats, JSON text without spaces."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float | Decimal):
        number = float(value)
        return None if math.isnan(number) else round(number, 6)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(UTC)
    if isinstance(value, str):
        return value.replace(", ", ",") if value.startswith("[") else value
    return value


@pytest.fixture
def pg(pg_dsn: str):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute(
            'CREATE TABLE t (id int, a int, b int, f float8, s text COLLATE "C", n text, '
            "flag boolean, ts timestamptz, j jsonb)"
        )
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO t VALUES ({', '.join(['%s'] * 9)})", ROWS)
        yield conn


def test_every_expression_matches_postgres(pg: psycopg.Connection) -> None:
    frame = pl.DataFrame(
        [dict(zip(COLUMNS, r, strict=True)) for r in ROWS],
        schema={
            "id": pl.Int32, "a": pl.Int32, "b": pl.Int32, "f": pl.Float64, "s": pl.String,
            "n": pl.String, "flag": pl.Boolean, "ts": pl.Datetime("us", "UTC"), "j": pl.String,
        },
        orient="row",
    )  # fmt: skip
    compiler = ExprCompiler(frame.schema)
    mismatches = []
    for text in EXPRESSIONS:
        sql = sqlglot.transpile(text, read="postgres", write="postgres")[0]
        try:
            expected = [_normal(r[0]) for r in pg.execute(f"SELECT {sql} FROM t ORDER BY id")]
        except psycopg.Error as error:
            mismatches.append((text, "postgres error", str(error).splitlines()[0]))
            continue
        ours = compiler.compile(OURS.get(text, text)).expr
        got = [_normal(v) for v in frame.with_columns(ours.alias("x"))["x"].to_list()]
        if got != expected:
            mismatches.append((text, expected, got))
    assert mismatches == []


@pytest.fixture
def pg_filters(pg_dsn: str):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE f (id int, a int, b float8, s text, flag boolean)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO f VALUES (%(id)s, %(a)s, %(b)s, %(s)s, %(flag)s)", rows())
        yield conn


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(filter=predicate())
def test_postgres_where_and_polars_select_the_same_rows(
    pg_filters: psycopg.Connection, filter: str
) -> None:
    where = to_postgres_where(filter)
    found = sorted(r[0] for r in pg_filters.execute(f"SELECT id FROM f WHERE {where}"))
    assert found == polars_ids(filter, rows()), (filter, where)
