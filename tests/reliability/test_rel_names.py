"""Hostile identifiers: quotes, semicolons, spaces, unicode, reserved words in table, column and
collection names (and in values) sync correctly, and nothing they contain is ever executed.

A ``victim`` table on both sides must survive names like ``Ta"ble; DROP TABLE victim;--``;
the data must arrive intact, key for key, through the snapshot, the stream (insert, update,
delete) and a column added mid-stream, Postgres → Postgres and Postgres → Mongo.
"""

from __future__ import annotations

import yaml
from psycopg import sql
from pymongo import MongoClient

from tests.e2e.harness import CLI, execute, rows
from tests.reliability.rel_support import record

TABLE = 'Ta"ble; DROP TABLE victim;-- é✓'
KEY = 'k"ey; --'
COLUMNS = ['co"l; DROP TABLE victim;--', "naïve col", "emoji🙂", "select", "Mixed Case", "it's"]
PG_ONLY = ["dot.ted", "back\\slash"]  # a dot nests in Mongo; fine as a Postgres name
NEW_COLUMN = 'late ""col"";'
VALUES = ["'; DROP TABLE victim; --", 'say "hi"', "naïve ☃ 🙂", "back\\slash\nnewline", "", None]


def config(target: dict) -> str:
    tree = {
        "state": "${SYNCENGINE_STATE}",
        "pipelines": {
            "hostile": {
                "source": {"type": "postgres", "dsn": "${SRC_DSN}", "tables": [f"public.{TABLE}"]},
                "target": target,
                "batch": {"max_rows": 100, "max_wait": "100ms"},
            }
        },
    }
    return yaml.safe_dump(tree, allow_unicode=True)


def ident(*names: str) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def create_source(dsn: str, columns: list[str]) -> None:
    body = sql.SQL(", ").join(
        [sql.SQL("{} int PRIMARY KEY").format(sql.Identifier(KEY))]
        + [sql.SQL("{} text").format(sql.Identifier(c)) for c in columns]
    )
    execute(
        dsn,
        "CREATE TABLE victim (id int)",
        sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(TABLE), body),
    )
    insert = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(TABLE),
        ident(KEY, *columns),
        sql.SQL(", ").join(sql.Placeholder() * (1 + len(columns))),
    )
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(60):
            conn.execute(insert, [i, *[VALUES[(i + j) % len(VALUES)] for j in range(len(columns))]])


def change_source(dsn: str, columns: list[str]) -> None:
    table = sql.Identifier(TABLE)
    execute(
        dsn,
        sql.SQL("UPDATE {} SET {} = {} || ' (upd)' WHERE {} % 3 = 0").format(
            table, sql.Identifier(columns[0]), sql.Identifier(columns[1]), sql.Identifier(KEY)
        ),
        sql.SQL("DELETE FROM {} WHERE {} % 5 = 1").format(table, sql.Identifier(KEY)),
        sql.SQL("ALTER TABLE {} ADD COLUMN {} text").format(table, sql.Identifier(NEW_COLUMN)),
        sql.SQL("INSERT INTO {} ({}, {}, {}) VALUES (1000, 'x;''y', 'new \"col\" value')").format(
            table, sql.Identifier(KEY), sql.Identifier(columns[2]), sql.Identifier(NEW_COLUMN)
        ),
        sql.SQL("UPDATE {} SET {} = 'late' WHERE {} = 2").format(
            table, sql.Identifier(NEW_COLUMN), sql.Identifier(KEY)
        ),
    )


def table_rows(dsn: str, columns: list[str]) -> list[tuple]:
    query = sql.SQL("SELECT {} FROM {} ORDER BY 1").format(
        ident(KEY, *columns), sql.Identifier(TABLE)
    )
    return rows(dsn, query)


def victims(dsn: str) -> list[tuple]:
    return rows(dsn, "SELECT count(*) FROM pg_tables WHERE tablename = 'victim'")


def test_hostile_names_pg_to_pg(tmp_path, pg_dsn, pg_target_dsn):
    columns = COLUMNS + PG_ONLY
    create_source(pg_dsn, columns)
    execute(pg_target_dsn, "CREATE TABLE victim (id int)")
    target = {"type": "postgres", "dsn": "${TGT_DSN}", "on_schema_change": "add"}
    cli = CLI(tmp_path, config(target), {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    cli.run("sync", "--once")
    assert column_names(pg_target_dsn) == column_names(pg_dsn)
    assert table_rows(pg_target_dsn, columns) == table_rows(pg_dsn, columns)
    change_source(pg_dsn, columns)
    cli.run("sync", "--once")
    everything = [*columns, NEW_COLUMN]
    assert column_names(pg_target_dsn) == column_names(pg_dsn)
    assert table_rows(pg_target_dsn, everything) == table_rows(pg_dsn, everything)
    assert victims(pg_dsn) == [(1,)] and victims(pg_target_dsn) == [(1,)]
    verify = cli.run("verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    record("hostile_names", inputs=len(everything) + 2)


def test_hostile_names_pg_to_mongo(tmp_path, pg_dsn, mongo_uri, mongo_db):
    create_source(pg_dsn, COLUMNS)
    target = {"type": "mongo", "uri": "${MONGO_URI}", "database": "${MONGO_DB}"}
    env = {"SRC_DSN": pg_dsn, "MONGO_URI": mongo_uri, "MONGO_DB": mongo_db}
    cli = CLI(tmp_path, config(target), env)

    def documents() -> list[tuple]:
        with MongoClient(mongo_uri) as client:
            docs = client[mongo_db][TABLE].find({}).sort("_id")
            return [(d["_id"], *[d.get(c) for c in [*COLUMNS, NEW_COLUMN]]) for d in docs]

    def expected() -> list[tuple]:
        present = table_rows(pg_dsn, COLUMNS) if not has_new(pg_dsn) else None
        if present is not None:
            return [(*r, None) for r in present]
        return table_rows(pg_dsn, [*COLUMNS, NEW_COLUMN])

    cli.run("sync", "--once")
    assert documents() == expected()
    change_source(pg_dsn, COLUMNS)
    cli.run("sync", "--once")
    assert documents() == expected()
    assert victims(pg_dsn) == [(1,)]
    verify = cli.run("verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def has_new(dsn: str) -> bool:
    found = rows(
        dsn,
        "SELECT count(*) FROM information_schema.columns WHERE column_name = %s",
        (NEW_COLUMN,),
    )
    return found[0][0] > 0


def column_names(dsn: str) -> list[str]:
    return [
        r[0]
        for r in rows(
            dsn,
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "ORDER BY ordinal_position",
            (TABLE,),
        )
    ]
