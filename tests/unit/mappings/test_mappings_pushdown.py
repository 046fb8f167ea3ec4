"""Filter push-down: translations, and a property test that the pushed-down SQL and the Polars
filter select the same rows (SQLite as the SQL reference here; the integration tests run the
Postgres WHERE and the Mongo $match on real servers)."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pyarrow as pa
import pytest
import sqlglot
from bson import Decimal128
from hypothesis import given, settings
from syncengine.mappings import compile_mapping, to_mongo_match, to_postgres_where
from syncengine.mappings.pushdown import (
    NotPushable,
    mongo_match_any,
    postgres_where_any,
    to_mongo_stream_match,
)

from syncengine.changes import ChangeBatch
from syncengine.config.models import MappingConfig
from tests.unit.mappings.mappings_filters import predicate, rows

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("a", pa.int64()),
        ("b", pa.float64()),
        ("s", pa.string()),
        ("flag", pa.bool_()),
    ]
)


def polars_ids(filter: str, data: list[dict]) -> list[int]:
    """The ids the mapping keeps when the rows arrive as a snapshot."""
    m = MappingConfig(source="t", key=["id"], filter=filter)
    batch = ChangeBatch.build(
        "t",
        pa.Table.from_pylist(data, schema=SCHEMA),
        ops=["r"] * len(data),
        positions=[str(i) for i in range(len(data))],
        key=["id"],
    )
    out = compile_mapping("p", m, SCHEMA, ("id",)).apply(batch)
    assert out.dead_letters == []
    return sorted(out.batch.data.column("id").to_pylist())


def test_postgres_where_is_a_transpiled_expression() -> None:
    # quoted: the mapping reads ``Status`` as written, Postgres would fold it to ``status``
    assert to_postgres_where("status <> 'draft' AND Total >= 1000") == (
        '"status" <> \'draft\' AND "Total" >= 1000'
    )
    assert to_postgres_where("s > 'b' and doc.a.b = 'x'") == (
        "\"s\" > 'b' COLLATE \"C\" AND \"doc\" #>> '{a,b}' = 'x'"
    )
    assert to_postgres_where("`total` >= 1", dialect="mysql") == '"total" >= 1'


def test_mongo_match_translates_three_valued_logic() -> None:
    assert to_mongo_match("status <> 'draft'") == {"status": {"$nin": ["draft", None]}}
    assert to_mongo_match("not (total > 5)") == {"total": {"$lte": 5}}
    assert to_mongo_match("not (a = 1 or b is null)") == {
        "$and": [{"a": {"$nin": [1, None]}}, {"b": {"$ne": None}}]
    }
    assert to_mongo_match("5 < total") == {"total": {"$gt": 5}}
    assert to_mongo_match("customer.tier in ('gold', 'vip')") == {
        "customer.tier": {"$in": ["gold", "vip"]}
    }
    assert to_mongo_match("name ilike 'a%'") == {"name": {"$regex": "^a.*$", "$options": "si"}}
    assert to_mongo_match("created > timestamptz '2024-01-02 03:00:00+01'") == {
        "created": {"$gt": dt.datetime(2024, 1, 2, 2, 0, tzinfo=dt.UTC)}
    }
    assert to_mongo_match("price >= 9.99::numeric") == {"price": {"$gte": Decimal128("9.99")}}


def test_mongo_match_refuses_what_it_cannot_translate_exactly() -> None:
    assert to_mongo_match("lower(name) = 'x'") is None
    assert to_mongo_match("a = b") is None
    assert to_mongo_match("created > '2024-01-01'") is None  # could be a date column
    assert to_mongo_match("a in (1, null)") is None
    assert to_mongo_match("doc->>'x' = '1'") is None


def test_stream_match_never_filters_updates_or_deletes() -> None:
    assert to_mongo_stream_match("total >= 1000") == {
        "$or": [
            {"operationType": {"$ne": "insert"}},
            {"fullDocument.total": {"$gte": 1000}},
        ]
    }


def test_several_mappings_push_the_or_of_their_filters() -> None:
    pg = [("status = 'open'", "postgres"), ("`total` >= 1000", "mysql")]
    assert postgres_where_any(pg) == '("status" = \'open\') OR ("total" >= 1000)'
    assert postgres_where_any(pg[:1]) == "\"status\" = 'open'"
    # a document lacking a field a filter reads is kept by the mapping (unsent: cannot tell)
    assert mongo_match_any(pg, "fullDocument.") == {
        "$or": [
            {"fullDocument.status": {"$eq": "open"}},
            {"fullDocument.total": {"$gte": 1000}},
            {"fullDocument.status": {"$exists": False}},
            {"fullDocument.total": {"$exists": False}},
        ]
    }
    assert mongo_match_any([("customer.tier = 'gold'", "postgres")]) == {
        "$or": [{"customer.tier": {"$eq": "gold"}}, {"customer": {"$exists": False}}]
    }


@pytest.mark.parametrize(
    "filter",
    [
        "a / b > 1",  # division by zero would abort the whole snapshot
        "a::int > 1",  # so would a failed cast
        "lower(s) = 'x'",  # locale-dependent in Postgres
        "s ilike 'x%'",
        "s ~ 'x'",  # POSIX regex, not Polars'
        "a in (select 1)",
    ],
)
def test_postgres_push_down_refuses_what_could_differ_or_fail(filter: str) -> None:
    with pytest.raises(NotPushable):
        postgres_where_any([("a = 1", "postgres"), (filter, "postgres")])


def test_nothing_is_pushed_for_a_table_that_a_mapping_reads_whole() -> None:
    with pytest.raises(NotPushable):
        postgres_where_any([])
    with pytest.raises(NotPushable):
        mongo_match_any([])
    with pytest.raises(NotPushable):  # one filter without a Mongo translation: none pushed
        mongo_match_any([("a = 1", "postgres"), ("lower(s) = 'x'", "postgres")])


def test_typed_constants_and_lists_are_pushed() -> None:
    where = postgres_where_any(
        [("created > timestamptz '2024-01-01' and a in (1, -2) and s like 'x%'", "postgres")]
    )
    assert where == (
        '"created" > CAST(\'2024-01-01\' AS TIMESTAMPTZ) AND "a" IN (1, -2) AND "s" LIKE \'x%\''
    )


def _sqlite_ids(conn: sqlite3.Connection, filter: str) -> list[int]:
    where = sqlglot.transpile(to_postgres_where(filter), read="postgres", write="sqlite")[0]
    where = where.replace(' COLLATE "C"', "")  # SQLite compares text bytewise already
    return sorted(r[0] for r in conn.execute(f"SELECT id FROM t WHERE {where}"))


DATA = rows()


def _sqlite() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("PRAGMA case_sensitive_like = ON")
    conn.execute("CREATE TABLE t (id INTEGER, a INTEGER, b REAL, s TEXT, flag BOOLEAN)")
    conn.executemany("INSERT INTO t VALUES (:id, :a, :b, :s, :flag)", DATA)
    return conn


SQLITE = _sqlite()


@settings(max_examples=300, deadline=None)
@given(predicate())
def test_pushed_down_sql_and_polars_agree(filter: str) -> None:
    assert _sqlite_ids(SQLITE, filter) == polars_ids(filter, DATA), filter
