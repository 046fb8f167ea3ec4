"""Keyless tables through the real CLI: pgbench's four tables (history has no key, REPLICA
IDENTITY FULL) under a pgbench load, identical rows, and empty tables created at backfill."""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.harness import CLI, execute, rows, wait_for

PGBENCH = Path("/usr/lib/postgresql/15/bin/pgbench")
TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      bench:
        source:
          type: postgres
          dsn: ${SRC_DSN}
          tables: [TABLES]
          snapshot_chunk_rows: 20000
        target: {type: postgres, dsn: "${TGT_DSN}"}
        batch: {max_rows: 2000, max_wait: 100ms}
    """
)


def config(*tables: str) -> str:
    return CONFIG.replace("TABLES", ", ".join(f"public.{t}" for t in tables))


def multiset(dsn: str, table: str) -> Counter[tuple[object, ...]]:
    return Counter(rows(dsn, f"SELECT * FROM {table}"))  # noqa: S608 - fixed test table names


def dead_letters(cli: CLI) -> list[object]:
    return json.loads(cli.run("deadletters", "list", "--json", "--all").stdout)


def pgbench(dsn: str, *args: str, timeout: float = 120) -> None:
    subprocess.run([str(PGBENCH), *args, dsn], check=True, capture_output=True, timeout=timeout)


@pytest.fixture
def bench(pg_dsn: str) -> str:
    if not PGBENCH.exists():
        pytest.skip("pgbench not installed")
    pgbench(pg_dsn, "-i", "-s", "1", "-q")
    execute(pg_dsn, "ALTER TABLE pgbench_history REPLICA IDENTITY FULL")
    return pg_dsn


def assert_replicated(src: str, tgt: str) -> None:
    for table in TABLES:
        assert multiset(src, table) == multiset(tgt, table), table


def test_pgbench_backfill_then_sync_once_under_load(tmp_path, bench, pg_target_dsn):
    cli = CLI(tmp_path, config(*TABLES), {"SRC_DSN": bench, "TGT_DSN": pg_target_dsn})
    assert "keyless" in cli.run("validate").stdout
    load = subprocess.Popen(
        [str(PGBENCH), "-T", "8", "-c", "2", "-n", bench],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        cli.run("backfill")
        cli.run("sync", "--once")
    finally:
        assert load.wait(60) == 0
    cli.run("sync", "--once")
    assert rows(bench, "SELECT count(*) FROM pgbench_history")[0][0] > 0
    assert_replicated(bench, pg_target_dsn)
    # the history row's NULL filler went in as NULL: no constraint the source lacks
    nullable = rows(
        pg_target_dsn,
        "SELECT count(*) FROM information_schema.table_constraints "
        "WHERE table_name = 'pgbench_history'",
    )
    assert nullable[0][0] == 0
    assert dead_letters(cli) == []


def test_pgbench_run_daemon_under_load(tmp_path, bench, pg_target_dsn):
    cli = CLI(tmp_path, config(*TABLES), {"SRC_DSN": bench, "TGT_DSN": pg_target_dsn})
    daemon = cli.start("run")
    try:
        wait_for(
            lambda: (
                multiset(bench, "pgbench_branches") == multiset(pg_target_dsn, "pgbench_branches")
            ),
            60,
        )
        pgbench(bench, "-T", "6", "-c", "2", "-n")
        wait_for(
            lambda: all(multiset(bench, t) == multiset(pg_target_dsn, t) for t in TABLES), 90, 1
        )
    finally:
        assert cli.stop(daemon, signal.SIGTERM) == 0, cli.daemon_logs()
    assert_replicated(bench, pg_target_dsn)
    assert dead_letters(cli) == []


KEYLESS = "CREATE TABLE eventlog (kind text, note text, n int)"


def test_identical_rows_change_one_at_a_time(tmp_path, pg_dsn, pg_target_dsn):
    execute(
        pg_dsn,
        KEYLESS,
        "ALTER TABLE eventlog REPLICA IDENTITY FULL",
        "INSERT INTO eventlog VALUES ('a', NULL, 1), ('a', NULL, 1), ('b', 'x', 2), "
        "('b', 'x', 2), ('b', 'x', 2)",
        "CREATE TABLE empty_keyed (id int PRIMARY KEY, price numeric(8,2) NOT NULL, t text)",
    )
    cli = CLI(
        tmp_path,
        config("eventlog", "empty_keyed"),
        {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn},
    )
    cli.run("backfill")
    assert multiset(pg_dsn, "eventlog") == multiset(pg_target_dsn, "eventlog")
    assert dead_letters(cli) == []
    # the empty table exists on the target, with its exact types and key
    shape = rows(
        pg_target_dsn,
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull "
        "FROM pg_attribute a WHERE a.attrelid = 'empty_keyed'::regclass AND a.attnum > 0 "
        "ORDER BY a.attnum",
    )
    assert shape == [
        ("id", "integer", True),
        ("price", "numeric(8,2)", False),
        ("t", "text", False),
    ]
    pk = rows(
        pg_target_dsn,
        "SELECT count(*) FROM pg_index WHERE indrelid = 'empty_keyed'::regclass AND indisprimary",
    )
    assert pk[0][0] == 1
    cli.run("sync", "--once")
    execute(
        pg_dsn,
        "DELETE FROM eventlog WHERE ctid = (SELECT ctid FROM eventlog WHERE kind = 'a' LIMIT 1)",
        "UPDATE eventlog SET n = 20 WHERE ctid = "
        "(SELECT ctid FROM eventlog WHERE kind = 'b' LIMIT 1)",
        # inserted and deleted in one group: cancels, never deletes a pre-existing twin
        "INSERT INTO eventlog VALUES ('c', NULL, NULL)",
        "DELETE FROM eventlog WHERE kind = 'c'",
    )
    cli.run("sync", "--once")
    target = multiset(pg_target_dsn, "eventlog")
    assert target == multiset(pg_dsn, "eventlog")
    assert target == Counter({("a", None, 1): 1, ("b", "x", 2): 2, ("b", "x", 20): 1})
    # a backfill run again replaces the keyless table's rows: nothing appended twice
    cli.run("backfill")
    assert multiset(pg_target_dsn, "eventlog") == target
    # verify compares a keyless table as a multiset: one copy too many is a difference
    assert cli.run("verify").returncode == 0
    execute(pg_target_dsn, "INSERT INTO eventlog VALUES ('a', NULL, 1)")
    report = json.loads(cli.run("verify", "--json", check=False).stdout)
    assert cli.run("verify", check=False).returncode == 1
    assert "copies" in json.dumps(report)


EVENTS_CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      events:
        source:
          type: postgres
          dsn: ${SRC_DSN}
          tables: [public.eventlog]
          snapshot_chunk_rows: 100
        target: TARGET
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)
MONGO_CONFIG = EVENTS_CONFIG.replace(
    "TARGET", '{type: mongo, uri: "${TGT_URI}", database: "${TGT_DB}"}'
)
PARQUET_CONFIG = EVENTS_CONFIG.replace("TARGET", '{type: parquet, path: "${TGT_PATH}"}')


def test_keyless_rows_into_mongo_get_ids_replays_cannot_duplicate(
    tmp_path, pg_dsn, mongo_uri, mongo_db
):
    from pymongo import MongoClient

    execute(
        pg_dsn,
        KEYLESS,
        "ALTER TABLE eventlog REPLICA IDENTITY FULL",
        "INSERT INTO eventlog VALUES ('a', NULL, 1), ('a', NULL, 1), ('b', 'x', 2)",
    )
    cli = CLI(
        tmp_path,
        MONGO_CONFIG,
        {"SRC_DSN": pg_dsn, "TGT_URI": mongo_uri, "TGT_DB": mongo_db},
    )

    def documents() -> Counter[tuple[object, ...]]:
        with MongoClient(mongo_uri) as client:
            docs = client[mongo_db]["eventlog"].find({}, {"_id": 0})
            return Counter((d.get("kind"), d.get("note"), d.get("n")) for d in docs)

    cli.run("backfill")
    assert documents() == multiset(pg_dsn, "eventlog")
    cli.run("sync", "--once")
    execute(
        pg_dsn,
        "INSERT INTO eventlog VALUES ('c', 'y', 3), ('c', 'y', 3)",
        "DELETE FROM eventlog WHERE ctid = (SELECT ctid FROM eventlog WHERE kind = 'a' LIMIT 1)",
        "UPDATE eventlog SET n = 5 WHERE kind = 'b'",
    )
    cli.run("sync", "--once")
    assert documents() == multiset(pg_dsn, "eventlog")
    # checkpoints forgotten: the next run copies the table again, replacing its documents
    cli.run("checkpoints", "reset", "--pipeline", "events", "--yes")
    cli.run("sync", "--once")
    assert documents() == multiset(pg_dsn, "eventlog")


def test_keyless_table_into_parquet_is_a_log_of_every_change(tmp_path, pg_dsn):
    from syncengine.targets.base import TableSpec
    from syncengine.targets.parquet import read_log, replay_log

    execute(
        pg_dsn,
        KEYLESS,
        "ALTER TABLE eventlog REPLICA IDENTITY FULL",
        # identical rows across several chunks: two chunks may hold the very same rows
        "INSERT INTO eventlog SELECT 'a', NULL, 1 FROM generate_series(1, 1000)",
    )
    path = tmp_path / "log"
    cli = CLI(tmp_path, PARQUET_CONFIG, {"SRC_DSN": pg_dsn, "TGT_PATH": str(path)})
    cli.run("backfill")
    cli.run("sync", "--once")
    execute(
        pg_dsn,
        "DELETE FROM eventlog WHERE ctid = (SELECT ctid FROM eventlog LIMIT 1)",
        "UPDATE eventlog SET note = 'x' WHERE ctid = (SELECT ctid FROM eventlog LIMIT 1)",
        "INSERT INTO eventlog VALUES ('b', '', NULL)",
    )
    cli.run("sync", "--once")
    log = read_log(path, "eventlog")
    assert sorted(set(log.column("_op").to_pylist())) == ["c", "d", "r", "t", "u"]
    spec = TableSpec("eventlog", (), log.select(["kind", "note", "n"]).schema)
    state = replay_log(log, spec)
    assert Counter(zip(*state.to_pydict().values(), strict=True)) == multiset(pg_dsn, "eventlog")
