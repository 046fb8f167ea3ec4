"""Deterministic data: every value is a function of the row id (and an update version).

Rows are generated inside Postgres (``generate_series``, set-wise, no client round trips), so
generating a million rows costs seconds and the same run always produces the same bytes. The
CDC workload is one ``DO`` block that commits every 100 row changes: 70 inserts, 25 updates and
5 deletes, the updates and deletes hitting rows of the previous transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import psycopg
from psycopg import sql

TABLE = "bench_rows"
TXN_INSERTS, TXN_UPDATES, TXN_DELETES = 70, 25, 5
TXN_CHANGES = TXN_INSERTS + TXN_UPDATES + TXN_DELETES
EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

DDL = """CREATE TABLE {t} (
    id bigint PRIMARY KEY,
    qty integer NOT NULL,
    name text NOT NULL,
    price numeric(12, 2) NOT NULL,
    created timestamptz NOT NULL,
    active boolean NOT NULL,
    attrs jsonb NOT NULL,
    ref uuid NOT NULL
)"""

# The eight columns for id ``i`` at version ``v`` (0 = inserted, 1 = updated).
ROW = """i,
    ((i * 7919 + v) % 100000)::integer,
    'name-' || md5((i + v)::text),
    (((i * 31 + v) % 10000000) / 100.0)::numeric(12, 2),
    timestamptz '2024-01-01 00:00:00+00' + (i + v * 1000) * interval '1 second',
    (i + v) % 3 = 0,
    jsonb_build_object('k', i, 'v', v, 'tag', 'tag' || (i % 10),
                       'vals', jsonb_build_array(i % 5, i % 7)),
    md5(i::text)::uuid"""

INSERT = (
    "INSERT INTO {t} SELECT "
    + ROW
    + " FROM generate_series(({lo})::bigint, ({hi})::bigint) AS i, (SELECT 0 AS v) AS ver"
)

UPDATE = """UPDATE {t} SET
    qty = ((id * 7919 + 1) % 100000)::integer,
    name = 'name-' || md5((id + 1)::text),
    price = (((id * 31 + 1) % 10000000) / 100.0)::numeric(12, 2),
    active = (id + 1) % 3 = 0,
    attrs = jsonb_build_object('k', id, 'v', 1, 'tag', 'tag' || (id % 10),
                               'vals', jsonb_build_array(id % 5, id % 7))
    WHERE id BETWEEN {lo} AND {hi}"""

DELETE = "DELETE FROM {t} WHERE id BETWEEN {lo} AND {hi}"

WORKLOAD = """DO $bench$
DECLARE
    base bigint;
BEGIN
    FOR k IN {first}..{last} LOOP
        base := k * 70;
        {insert};
        {update};
        {delete};
        COMMIT;
    END LOOP;
END
$bench$"""


def create_table(conn: psycopg.Connection[Any], table: str = TABLE) -> None:
    conn.execute(sql.SQL(DDL).format(t=sql.Identifier(table)))


def insert_rows(
    conn: psycopg.Connection[Any], lo: int, hi: int, table: str = TABLE, chunk: int = 200_000
) -> None:
    """Rows ``lo..hi`` (inclusive), committed per ``chunk`` unless ``conn`` is in a transaction."""
    for start in range(lo, hi + 1, chunk):
        end = min(hi, start + chunk - 1)
        conn.execute(_insert(table, sql.Literal(start), sql.Literal(end)))


def _insert(table: str, lo: sql.Composable, hi: sql.Composable) -> sql.Composed:
    return sql.SQL(INSERT).format(t=sql.Identifier(table), lo=lo, hi=hi)


def seed_for_workload(conn: psycopg.Connection[Any], table: str = TABLE) -> None:
    """The rows the first workload transaction updates and deletes (ids -69..0)."""
    insert_rows(conn, 1 - TXN_INSERTS, 0, table)


def workload_sql(first_txn: int, last_txn: int, table: str = TABLE) -> sql.Composed:
    """Transactions ``first_txn..last_txn`` of the 70/25/5 workload, one commit each."""
    base = sql.SQL("base")
    t = sql.Identifier(table)
    return sql.SQL(WORKLOAD).format(
        first=sql.Literal(first_txn),
        last=sql.Literal(last_txn),
        insert=_insert(table, sql.SQL("base + 1"), sql.SQL("base + 70")),
        update=sql.SQL(UPDATE).format(t=t, lo=sql.SQL("base - 69"), hi=sql.SQL("base - 45")),
        delete=sql.SQL(DELETE).format(t=t, lo=sql.SQL("base - 4"), hi=base),
    )


def txn_statements(k: int, table: str = TABLE) -> list[sql.Composed]:
    """Workload transaction ``k`` as three statements (for a client that paces commits)."""
    b = k * TXN_INSERTS
    t = sql.Identifier(table)
    return [
        _insert(table, sql.Literal(b + 1), sql.Literal(b + 70)),
        sql.SQL(UPDATE).format(t=t, lo=sql.Literal(b - 69), hi=sql.Literal(b - 45)),
        sql.SQL(DELETE).format(t=t, lo=sql.Literal(b - 4), hi=sql.Literal(b)),
    ]


def workload_rows_after(txns: int) -> int:
    """Rows in the table after the seed and ``txns`` workload transactions."""
    return TXN_INSERTS + txns * (TXN_INSERTS - TXN_DELETES)


# -- documents (Mongo) -----------------------------------------------------------------------


def document(i: int, v: int = 0) -> dict[str, Any]:
    """The Mongo twin of ``ROW``: same values, BSON-native types."""
    return {
        "_id": i,
        "qty": (i * 7919 + v) % 100000,
        "name": "name-" + hashlib.md5(str(i + v).encode()).hexdigest(),
        "price": round(((i * 31 + v) % 10_000_000) / 100.0, 2),
        "created": EPOCH + dt.timedelta(seconds=i + v * 1000),
        "active": (i + v) % 3 == 0,
        "attrs": {"k": i, "v": v, "tag": f"tag{i % 10}", "vals": [i % 5, i % 7]},
        "ref": str(_uuid(i)),
    }


def update_fields(i: int) -> dict[str, Any]:
    """The ``$set`` of an update: version 1 of the columns ``UPDATE`` changes."""
    doc = document(i, 1)
    return {k: doc[k] for k in ("qty", "name", "price", "active", "attrs")}


def _uuid(i: int) -> Any:
    import uuid

    return uuid.UUID(hashlib.md5(str(i).encode()).hexdigest())
