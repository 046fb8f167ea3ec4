"""Table names that need quoting, through every CLI command, written both ways.

Schema ``My.Schema`` and tables ``T.with.dots`` and ``Order Items; x`` are configured in the SQL
form (``"My.Schema"."T.with.dots"``) and in the raw form (``public.Order Items; x``; a dotted
schema cannot be written raw, and the raw attempt is answered with the quoted name). One
source feeds a Postgres, a Mongo and a Parquet target, each with the target name derived from
the source name. The commands: validate, backfill (``--table`` in the other form too), sync,
run + SIGTERM, status, verify, checkpoints, deadletters (a target CHECK refuses a row; replay
after dropping it) and conflicts (a target edit parked by ``manual``; resolve).
"""

from __future__ import annotations

import json
import signal

import pytest
import yaml
from psycopg import sql
from pymongo import MongoClient

from tests.e2e.harness import CLI, execute, rows, wait_for

DOTTED = "T.with.dots"
ITEMS = "Order Items; x"
FORMS = {
    # form: (tables as written, where the dotted table lives, --table written the other way)
    "quoted": (
        ['"My.Schema"."T.with.dots"', 'public."Order Items; x"'],
        "My.Schema",
        "public.Order Items; x",
    ),
    "raw": (["public.T.with.dots", "public.Order Items; x"], "public", 'public."Order Items; x"'),
}


def table(schema: str, name: str) -> sql.Identifier:
    return sql.Identifier(schema, name)


def config(tables: list[str], parquet: str) -> str:
    source = {"type": "postgres", "dsn": "${SRC_DSN}", "tables": tables}
    batch = {"max_rows": 100, "max_wait": "100ms"}
    pipelines = {
        "pg": {
            "source": source,
            "target": {"type": "postgres", "dsn": "${TGT_DSN}"},
            "conflicts": {"strategy": "manual"},
            "batch": batch,
        },
        "mg": {
            "source": source,
            "target": {"type": "mongo", "uri": "${MONGO_URI}", "database": "${MONGO_DB}"},
            "batch": batch,
        },
        "pq": {"source": source, "target": {"type": "parquet", "path": parquet}, "batch": batch},
    }
    return yaml.safe_dump({"state": "${SYNCENGINE_STATE}", "pipelines": pipelines})


def create_source(dsn: str) -> None:
    ddl = [sql.SQL('CREATE SCHEMA "My.Schema"')]
    for schema in ("My.Schema", "public"):
        ddl.append(
            sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v text)").format(table(schema, DOTTED))
        )
        ddl.append(
            sql.SQL("INSERT INTO {} SELECT i, 'v' || i FROM generate_series(1, 20) i").format(
                table(schema, DOTTED)
            )
        )
    ddl.append(
        sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, qty int)").format(table("public", ITEMS))
    )
    ddl.append(
        sql.SQL("INSERT INTO {} SELECT i, i FROM generate_series(1, 20) i").format(
            table("public", ITEMS)
        )
    )
    execute(dsn, *ddl)


def count(dsn: str, schema: str, name: str) -> int:
    return rows(dsn, sql.SQL("SELECT count(*) FROM {}").format(table(schema, name)))[0][0]


def content(dsn: str, schema: str, name: str) -> list[tuple[object, ...]]:
    return rows(dsn, sql.SQL("SELECT * FROM {} ORDER BY 1").format(table(schema, name)))


@pytest.mark.parametrize("form", list(FORMS))
def test_hostile_table_names_through_every_command(
    form, tmp_path, pg_dsn, pg_target_dsn, mongo_uri, mongo_db
):
    tables, schema, other_form = FORMS[form]
    create_source(pg_dsn)
    # the Postgres target refuses negative quantities: the dead-letter path
    execute(
        pg_target_dsn,
        sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, qty int CHECK (qty >= 0))").format(
            table("public", ITEMS)
        ),
    )
    parquet = tmp_path / "lake"
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "MONGO_URI": mongo_uri}
    env["MONGO_DB"] = mongo_db

    if form == "raw":  # a dotted schema cannot be written raw: the catalog suggests the SQL form
        wrong = CLI(tmp_path, config(["My.Schema.T.with.dots"], str(parquet)), env)
        refused = wrong.run("validate", "--pipeline", "pg", check=False)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert '\'"My.Schema"."T.with.dots"\'' in refused.stdout + refused.stderr
        assert "Traceback" not in refused.stderr
    cli = CLI(tmp_path, config(tables, str(parquet)), env)
    cli.run("validate")

    # backfill one table, named the other way round, then an unknown one, then all
    cli.run("backfill", "--pipeline", "pg", "--table", other_form)
    assert count(pg_target_dsn, "public", ITEMS) == 20
    assert rows(pg_target_dsn, "SELECT to_regclass('public.\"T.with.dots\"')") == [(None,)]
    unknown = cli.run("backfill", "-p", "pg", "--table", "public.Order Item; x", check=False)
    assert unknown.returncode == 2 and "did you mean" in unknown.stderr, unknown.stderr
    assert "Traceback" not in unknown.stderr
    for name in ("pg", "mg", "pq"):
        cli.run("backfill", "--pipeline", name)
    assert content(pg_target_dsn, "public", DOTTED) == content(pg_dsn, schema, DOTTED)

    # stream: one row the target refuses, one the target edited meanwhile (a conflict)
    execute(
        pg_target_dsn,
        sql.SQL("UPDATE {} SET v = 'edited on the target' WHERE id = 1").format(
            table("public", DOTTED)
        ),
    )
    execute(
        pg_dsn,
        sql.SQL("INSERT INTO {} VALUES (21, -1), (22, 22)").format(table("public", ITEMS)),
        sql.SQL("UPDATE {} SET v = 'changed at the source' WHERE id IN (1, 2)").format(
            table(schema, DOTTED)
        ),
    )
    cli.run("sync", "--once")
    assert count(pg_target_dsn, "public", ITEMS) == 21

    (letter,) = json.loads(cli.run("deadletters", "list", "--pipeline", "pg", "--json").stdout)
    assert letter["table"] == 'public."Order Items; x"' and letter["payload"]["qty"] == -1
    shown_letter = json.loads(cli.run("deadletters", "show", str(letter["id"])).stdout)
    assert shown_letter["payload"] == letter["payload"]
    execute(
        pg_target_dsn,
        sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
            table("public", ITEMS), sql.Identifier("Order Items; x_qty_check")
        ),
    )
    replayed = cli.run("deadletters", "replay", "--pipeline", "pg")
    assert "1 replayed, 0 dead-lettered again" in replayed.stdout

    (conflict,) = json.loads(cli.run("conflicts", "list", "--json").stdout)
    assert conflict["table"] == '"T.with.dots"' and conflict["pipeline"] == "pg"
    assert "edited on the target" in cli.run("conflicts", "show", str(conflict["id"])).stdout
    cli.run("conflicts", "resolve", str(conflict["id"]), "--take", "remote")
    assert content(pg_target_dsn, "public", DOTTED) == content(pg_dsn, schema, DOTTED)

    # the daemon streams a change to every target, then stops on SIGTERM
    daemon = cli.start("run")
    execute(
        pg_dsn,
        sql.SQL("INSERT INTO {} VALUES (100, 'streamed')").format(table(schema, DOTTED)),
        sql.SQL("DELETE FROM {} WHERE id = 3").format(table("public", ITEMS)),
    )
    with MongoClient(mongo_uri) as client:
        wait_for(lambda: client[mongo_db][DOTTED].count_documents({"_id": 100}) == 1, 60)
    wait_for(lambda: count(pg_target_dsn, "public", DOTTED) == 21, 60)
    assert cli.stop(daemon, signal.SIGTERM) == 0, cli.daemon_logs()
    assert "Traceback" not in cli.daemon_logs()

    status = json.loads(cli.run("status", "--json").stdout)
    assert {s["pipeline"] for s in status} == {"pg", "mg", "pq"}
    assert all(s["checkpoint"] and "error" not in s for s in status), status
    for columns in (80, 250):  # blocks in a narrow terminal, the table in a wide one
        cli.env["COLUMNS"] = str(columns)
        text = cli.run("status").stdout
        assert "…" not in text and all(len(line) <= columns for line in text.splitlines())
        assert all(s["checkpoint"] in text for s in status)
        assert ("pipeline pg" in text) == (columns == 80), text
    shown = json.loads(cli.run("checkpoints", "show", "--json").stdout)
    assert all(c["position"] for c in shown), shown

    verified = cli.run("verify", "--json", check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert (parquet / DOTTED).is_dir() and (parquet / ITEMS).is_dir()
    with MongoClient(mongo_uri) as client:
        assert set(client[mongo_db].list_collection_names()) >= {DOTTED, ITEMS}
