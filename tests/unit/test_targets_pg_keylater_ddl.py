"""The DDL of a table whose primary key is built after its load: same columns, NOT NULL kept."""

from __future__ import annotations

import pyarrow as pa

from syncengine.targets.base import TableSpec
from syncengine.targets.postgres.ddl import create_table_sql

SPEC = TableSpec(
    "t",
    ("a", "b"),
    pa.schema([("a", pa.int64()), ("b", pa.string()), ("note", pa.string())]),
)


def test_without_the_key_index_the_key_columns_stay_not_null():
    later = create_table_sql("s", SPEC, key_index=False).as_string(None)
    assert later == (
        'CREATE TABLE IF NOT EXISTS "s"."t" ("a" bigint NOT NULL, "b" text NOT NULL, "note" text)'
    )


def test_with_the_key_index_only_the_constraint_differs():
    now = create_table_sql("s", SPEC).as_string(None)
    later = create_table_sql("s", SPEC, key_index=False).as_string(None)
    assert now == later[:-1] + ', PRIMARY KEY ("a", "b"))'
