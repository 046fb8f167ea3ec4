"""Updates that change a row's key, through the real CLI: the old key's row leaves the target
(Postgres, Mongo), the new key's row keeps values Postgres did not resend (unchanged TOAST,
under REPLICA IDENTITY DEFAULT and FULL), partitioned tables move rows across partitions, and a
re-insert of the old key in the same or a later transaction stays. Parquet, a change log,
records a delete of the old key and an update of the new."""

from __future__ import annotations

import textwrap

import pytest
from pymongo import MongoClient

from syncengine.targets.parquet import read_log
from tests.e2e.harness import CLI, execute, rows

BIG = "(SELECT string_agg(md5(g::text), '') FROM generate_series(1, 4000) g)"
SEED = (
    "CREATE TABLE items (id int PRIMARY KEY, name text, big text)",
    "CREATE TABLE itemsf (id int PRIMARY KEY, name text, big text)",
    "ALTER TABLE itemsf REPLICA IDENTITY FULL",
    "CREATE TABLE parted (id int, at date, v text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)",
    "CREATE TABLE parted_h1 PARTITION OF parted FOR VALUES FROM ('2024-01-01') TO ('2024-07-01')",
    "CREATE TABLE parted_h2 PARTITION OF parted FOR VALUES FROM ('2024-07-01') TO ('2025-01-01')",
    f"INSERT INTO items SELECT i, 'n' || i, CASE WHEN i = 1 THEN {BIG} END "
    "FROM generate_series(1, 5) i",
    f"INSERT INTO itemsf SELECT i, 'n' || i, CASE WHEN i = 1 THEN {BIG} END "
    "FROM generate_series(1, 5) i",
    "INSERT INTO parted VALUES (1, '2024-02-01', 'a'), (2, '2024-03-01', 'b'), "
    "(3, '2024-08-01', 'c')",
)
CHANGES = (
    "UPDATE items SET id = 100 WHERE id = 1",  # unchanged TOAST, old key only
    "UPDATE itemsf SET id = 100 WHERE id = 1",  # unchanged TOAST, whole old row
    "BEGIN; INSERT INTO items VALUES (10, 'ten', NULL); UPDATE items SET id = 11 WHERE id = 10; "
    "INSERT INTO items VALUES (10, 'ten again', NULL); COMMIT",
    "UPDATE items SET id = id + 1000, name = 'moved' WHERE id IN (2, 3)",
    "INSERT INTO items VALUES (1, 'reborn', NULL)",
    "UPDATE items SET id = 4 WHERE id = 1002",  # a key taken before: 4 was deleted first
    "BEGIN; DELETE FROM itemsf WHERE id = 4; UPDATE itemsf SET id = 4 WHERE id = 5; COMMIT",
    "UPDATE parted SET at = '2024-09-01' WHERE id = 1",  # across partitions: delete + insert
    "UPDATE parted SET at = at + 1 WHERE id IN (2, 3)",  # within one partition: key change
)
QUERIES = {
    "items": "SELECT id, name, md5(big) FROM items ORDER BY id",
    "itemsf": "SELECT id, name, md5(big) FROM itemsf ORDER BY id",
    "parted": "SELECT id, at, v FROM parted ORDER BY id, at",
}


def config(target: str, strategy: str = "remote", tables: str = "items, itemsf, parted") -> str:
    listed = ", ".join(f"public.{t.strip()}" for t in tables.split(","))
    return textwrap.dedent(
        f"""
        state: ${{SYNCENGINE_STATE}}
        pipelines:
          moves:
            source: {{type: postgres, dsn: "${{SRC_DSN}}", tables: [{listed}]}}
            target: {target}
            conflicts: {{strategy: {strategy}}}
            batch: {{max_rows: 100, max_wait: 100ms}}
        """
    )


def seed_sync_change_sync(cli: CLI, pg_dsn: str) -> None:
    execute(pg_dsn, *SEED)
    cli.run("sync", "--once")
    # items 4 goes first, so that 1002 can take its key (a key that existed before)
    execute(pg_dsn, "DELETE FROM items WHERE id = 4")
    execute(pg_dsn, *CHANGES)
    result = cli.run("sync", "--once")
    assert "dead letter" not in result.stderr.lower(), result.stderr


@pytest.mark.parametrize("strategy", ["remote", "merge", "manual"])
def test_postgres_target_drops_the_old_key_and_keeps_unsent_values(
    tmp_path, pg_dsn, pg_target_dsn, strategy
):
    target = '{type: postgres, dsn: "${TGT_DSN}"}'
    cli = CLI(tmp_path, config(target, strategy), {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    seed_sync_change_sync(cli, pg_dsn)
    for table, query in QUERIES.items():
        assert rows(pg_target_dsn, query) == rows(pg_dsn, query), table
    moved = rows(pg_target_dsn, "SELECT md5(big) FROM items WHERE id = 100")
    assert moved == rows(pg_dsn, f"SELECT md5({BIG})") and moved[0][0] is not None
    assert rows(pg_target_dsn, "SELECT name FROM items WHERE id IN (1, 10, 11) ORDER BY id") == [
        ("reborn",),
        ("ten again",),
        ("ten",),
    ]
    assert "moves: 0 change(s) applied" in cli.run("sync", "--once").stdout
    assert cli.run("verify").returncode == 0
    if strategy == "manual":
        listed = cli.run("conflicts", "list", "--json").stdout.strip()
        assert listed in ("[]", ""), listed


def test_mongo_target_drops_the_old_id_and_keeps_unsent_values(
    tmp_path, pg_dsn, mongo_uri, mongo_db
):
    target = '{type: mongo, uri: "${MONGO_URI}", database: "${MONGO_DB}"}'
    env = {"SRC_DSN": pg_dsn, "MONGO_URI": mongo_uri, "MONGO_DB": mongo_db}
    cli = CLI(tmp_path, config(target, tables="items, itemsf"), env)
    seed_sync_change_sync(cli, pg_dsn)
    big = rows(pg_dsn, f"SELECT {BIG}")[0][0]
    with MongoClient(mongo_uri) as client:
        for table in ("items", "itemsf"):
            docs = {d["_id"]: d for d in client[mongo_db][table].find({})}
            source = rows(pg_dsn, f"SELECT id, name FROM {table} ORDER BY id")  # noqa: S608
            assert sorted(docs) == [r[0] for r in source], table
            assert {d["_id"]: d["name"] for d in docs.values()} == dict(source), table
            assert docs[100]["big"] == big, table


def test_parquet_log_records_a_delete_of_the_old_key_then_the_new_row(tmp_path, pg_dsn):
    cli = CLI(
        tmp_path,
        config(f'{{type: parquet, path: "{tmp_path / "lake"}"}}', tables="items"),
        {"SRC_DSN": pg_dsn},
    )
    seed_sync_change_sync(cli, pg_dsn)
    log = read_log(tmp_path / "lake", "items").to_pylist()
    changes = [(r["_op"], r["id"]) for r in log if r["_op"] != "r"]
    first = changes.index(("d", 1))
    assert changes[first + 1] == ("u", 100)
    (moved,) = [r for r in log if r["id"] == 100]
    assert moved["big"] == rows(pg_dsn, f"SELECT {BIG}")[0][0]
    assert not moved.get("_unsent.big")
    assert ("d", 2) in changes and ("u", 1002) in changes
    assert changes.index(("d", 2)) < changes.index(("u", 1002))
