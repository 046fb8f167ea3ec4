"""A keyless table (REPLICA IDENTITY FULL, identical rows allowed) re-snapshotted while the
pipeline streams (issue 19): its changes are held while the copy replaces the target table at
one position, then released past it. Writers insert, update and delete rows of it (and of a
keyed table) throughout, the daemon is SIGKILLed in the middle of the copy and restarted: the
target ends holding the source's multiset of rows. Real servers."""

from __future__ import annotations

import signal
import sqlite3
from collections import Counter

import psycopg

from tests.e2e import test_e2e_tableops as tableops
from tests.e2e.harness import CLI, execute, rows, wait_for
from tests.e2e.tableops_support import Loop

ROWS = 20_000
CONFIG = (
    tableops.PG_CONFIG.replace("[public.a, public.b]", "[public.a, public.k]")
    .replace("snapshot_chunk_rows: 150", "snapshot_chunk_rows: 500")
    .replace("max_rows: 500", "max_rows: 200")
)


def multiset(dsn: str, table: str) -> Counter[tuple[object, ...]]:
    return Counter(rows(dsn, f"SELECT g, v, pad FROM {table}"))  # noqa: S608 - test tables


def _request(cli: CLI) -> tuple[str, int] | None:
    """(status, chunks done) of the re-snapshot of public.k."""
    with sqlite3.connect(cli.dir / "state.db") as db:
        found = db.execute(
            "SELECT status FROM table_requests WHERE source_table = 'public.k' ORDER BY id DESC"
        ).fetchone()
        done = db.execute(
            "SELECT COUNT(*) FROM chunks WHERE pipeline = 'p/tables' AND status = 'done'"
        ).fetchone()[0]
    return (found[0], done) if found else None


def _paused(cli: CLI) -> list[str]:
    with sqlite3.connect(cli.dir / "state.db") as db:
        return [r[0] for r in db.execute("SELECT source_table FROM paused_tables")]


def _keyless_writer(dsn: str) -> Loop:
    conn = psycopg.connect(dsn, autocommit=True)
    one = "(SELECT ctid FROM k WHERE g = %s LIMIT 1)"

    def step(rng) -> None:
        g = rng.randint(1, 500)
        pick = rng.random()
        if pick < 0.4:  # an identical copy of a row, or a new one
            conn.execute("INSERT INTO k VALUES (%s, %s, 'w')", (g, rng.randint(0, 3)))
        elif pick < 0.75:
            conn.execute(f"UPDATE k SET v = v + 1 WHERE ctid = {one}", (g,))
        else:
            conn.execute(f"DELETE FROM k WHERE ctid = {one}", (g,))

    return Loop(step, pause=0.001)


def test_keyless_resnapshot_under_writes_survives_sigkill(tmp_path, pg_dsn, pg_target_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE a (id int PRIMARY KEY, n int NOT NULL, pad text)",
        "INSERT INTO a SELECT i, 0, 'x' FROM generate_series(1, 1000) i",
        "CREATE TABLE k (g int NOT NULL, v int NOT NULL, pad text)",
        "ALTER TABLE k REPLICA IDENTITY FULL",
        # every (g, v) pair several times: identical rows are the case a key cannot name
        f"INSERT INTO k SELECT i % 500 + 1, i % 3, 'p' FROM generate_series(1, {ROWS}) i",
    )
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    daemon = cli.start("run")
    writers: list[Loop] = []
    try:
        wait_for(lambda: multiset(pg_target_dsn, "k") == multiset(pg_dsn, "k"), 180)
        # drift the copy must repair: rows the source never had, rows the target lost
        execute(
            pg_target_dsn,
            "INSERT INTO k VALUES (9001, 0, 'ghost'), (9001, 0, 'ghost')",
            "DELETE FROM k WHERE ctid IN (SELECT ctid FROM k WHERE g = 7 LIMIT 3)",
        )
        writers = [_keyless_writer(pg_dsn), tableops._pg_writer(pg_dsn, "a")]
        for loop in writers:
            loop.start()
        assert (
            "handed to the running daemon"
            in cli.run("resnapshot", "-p", "p", "--table", "k").stdout
        )
        wait_for(lambda: (_request(cli) or ("", 0))[1] >= 3, 120, 0.02)
        assert _request(cli)[0] == "running"  # type: ignore[index]
        daemon.send_signal(signal.SIGKILL)
        daemon.wait(30)
        assert _paused(cli) == ["public.k"]  # its changes are held while it is copied
        daemon = cli.start("run")
        wait_for(lambda: _request(cli)[0] == "done", 180, 0.2)  # type: ignore[index]
        wait_for(lambda: not _paused(cli), 120, 0.2)  # released past the copy's position
        for loop in writers:
            assert loop.finish() > 0
        writers = []
        wait_for(lambda: multiset(pg_target_dsn, "k") == multiset(pg_dsn, "k"), 120)
        query = "SELECT id, n, pad FROM a ORDER BY id"
        wait_for(lambda: rows(pg_target_dsn, query) == rows(pg_dsn, query), 60)
        logs = cli.daemon_logs()
        assert "public.k has no key: its changes are held while it is copied" in logs
        assert daemon.poll() is None
    finally:
        for loop in writers:
            loop.halt.set()
        if daemon.poll() is None:
            assert cli.stop(daemon) == 0


def test_keyless_resnapshot_in_the_foreground_and_where_refused(tmp_path, pg_dsn, pg_target_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE a (id int PRIMARY KEY, n int NOT NULL, pad text)",
        "CREATE TABLE k (g int NOT NULL, v int NOT NULL, pad text)",
        "ALTER TABLE k REPLICA IDENTITY FULL",
        "INSERT INTO k SELECT i % 50 + 1, i % 3, 'p' FROM generate_series(1, 2000) i",
    )
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    cli.run("sync", "--once")
    bad = cli.run("resnapshot", "-p", "p", "--table", "k", "--where", "g < 5", check=False)
    assert bad.returncode == 2 and "--where cannot apply" in bad.stderr
    execute(pg_target_dsn, "INSERT INTO k VALUES (9001, 0, 'ghost')", "DELETE FROM k WHERE g = 3")
    # changes after the copy's position arrive with the next sync; those before it are fenced
    execute(pg_dsn, "DELETE FROM k WHERE g = 4", "UPDATE k SET v = 7 WHERE g = 5")
    cli.run("resnapshot", "-p", "p", "--table", "k")
    assert multiset(pg_target_dsn, "k") == multiset(pg_dsn, "k")
    execute(pg_dsn, "INSERT INTO k VALUES (6, 0, 'p')", "DELETE FROM k WHERE g = 8")
    cli.run("sync", "--once")
    assert multiset(pg_target_dsn, "k") == multiset(pg_dsn, "k")


def test_keyless_table_added_by_reload_under_writes(tmp_path, pg_dsn, pg_target_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE a (id int PRIMARY KEY, n int NOT NULL, pad text)",
        "INSERT INTO a SELECT i, 0, 'x' FROM generate_series(1, 1000) i",
        "CREATE TABLE k (g int NOT NULL, v int NOT NULL, pad text)",
        "ALTER TABLE k REPLICA IDENTITY FULL",
        "INSERT INTO k SELECT i % 500 + 1, i % 3, 'p' FROM generate_series(1, 5000) i",
    )
    only_a = CONFIG.replace("[public.a, public.k]", "[public.a]")
    cli = CLI(tmp_path, only_a, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    daemon = cli.start("run")
    writer = _keyless_writer(pg_dsn)
    try:
        query = "SELECT id, n, pad FROM a ORDER BY id"
        wait_for(lambda: rows(pg_target_dsn, query) == rows(pg_dsn, query), 120)
        writer.start()
        cli.config.write_text(CONFIG)
        cli.run("reload")
        wait_for(lambda: (_request(cli) or ("",))[0] == "done", 180, 0.2)
        wait_for(lambda: not _paused(cli), 120, 0.2)
        assert writer.finish() > 0
        wait_for(lambda: multiset(pg_target_dsn, "k") == multiset(pg_dsn, "k"), 120)
        assert "public.k has no key: its changes are held while it is copied" in cli.daemon_logs()
        assert daemon.poll() is None
    finally:
        writer.halt.set()
        if daemon.poll() is None:
            assert cli.stop(daemon) == 0
