"""The daemon with a shared state store (``state: postgresql://…``), driven from elsewhere.

The daemon runs in one directory; a second directory (another machine, as far as the state
is concerned: no file in common) names the same store. From there a second ``run`` of the
pipeline is refused by the store's lock, naming the daemon; ``pause`` and ``resume`` of one
table reach the daemon through the store while writers keep changing both tables; and the
daemon's own connections to the store are cut several times meanwhile: it reconnects, the
paused table's target stays still, the other keeps flowing, and after the resume both equal
their source row for row. Then the connection holding the daemon's lock is cut: nobody else
took the lock, so the daemon takes it again and goes on; cut again while another process
takes it first, the pipeline stops (two processes must never run one pipeline).
"""

from __future__ import annotations

import json
import time

import psycopg

from tests.e2e.harness import CLI, execute, rows, wait_for
from tests.e2e.test_e2e_pause import PG_CONFIG, SNAPSHOT, Writers


def same(src: str, tgt: str, table: str) -> bool:
    return rows(src, SNAPSHOT.format(table)) == rows(tgt, SNAPSHOT.format(table))


def _terminate(state_dsn: str, application_name: str) -> int:
    """Terminate the store's connections whose application_name is LIKE this; how many."""
    found = rows(
        state_dsn,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name LIKE %s",
        (application_name,),
    )
    return int(found[0][0])


def cut_state_connections(state_dsn: str, pid: int) -> int:
    """Terminate the store connections of process ``pid``."""
    return _terminate(state_dsn, f"syncengine state {pid}")


def cut_lock_connection(state_dsn: str, pid: int) -> int:
    """Terminate the connection holding the pipeline locks of process ``pid``."""
    return _terminate(state_dsn, f"syncengine {pid} %")


def test_daemon_on_a_shared_store_is_locked_paused_and_resumed_from_elsewhere(
    tmp_path, pg_dsn, pg_target_dsn, pg_third_dsn
):
    execute(
        pg_dsn,
        "CREATE TABLE a (id int PRIMARY KEY, n int NOT NULL, v text)",
        "CREATE TABLE b (id int PRIMARY KEY, n int NOT NULL, v text)",
        "INSERT INTO a SELECT i, 0, 'a' FROM generate_series(1, 300) i",
        "INSERT INTO b SELECT i, 0, 'b' FROM generate_series(1, 300) i",
    )
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn}
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    local, remote = CLI(here, PG_CONFIG, env), CLI(elsewhere, PG_CONFIG, env)
    for cli in (local, remote):
        cli.env["SYNCENGINE_STATE"] = pg_third_dsn
    daemon = local.start("run")
    try:
        wait_for(lambda: rows(pg_target_dsn, "SELECT count(*) FROM b") == [(300,)], 60)
        second = remote.run("run", check=False, timeout=60)
        assert second.returncode == 1
        assert f"'run' (pid {daemon.pid})" in second.stderr

        cuts = 0
        with Writers(pg_dsn) as writers:
            time.sleep(1)
            remote.run("pause", "--pipeline", "p", "--table", "b")  # waits for the daemon
            frozen = rows(pg_target_dsn, SNAPSHOT.format("b"))
            a_before = rows(pg_target_dsn, SNAPSHOT.format("a"))
            for _ in range(4):
                time.sleep(0.8)
                cuts += cut_state_connections(pg_third_dsn, daemon.pid)
            time.sleep(2)
            assert rows(pg_target_dsn, SNAPSHOT.format("b")) == frozen
            assert rows(pg_target_dsn, SNAPSHOT.format("a")) != a_before
        assert writers.count > 100
        assert cuts >= 2, "the daemon kept no connection to the store open to cut"
        assert daemon.poll() is None, local.daemon_logs()
        wait_for(lambda: same(pg_dsn, pg_target_dsn, "a"), 60)
        assert rows(pg_target_dsn, SNAPSHOT.format("b")) == frozen

        remote.run("resume", "--pipeline", "p", "--table", "public.b", "--wait", "120")
        wait_for(lambda: same(pg_dsn, pg_target_dsn, "b"), 60)
        assert same(pg_dsn, pg_target_dsn, "a")
        status = {
            r["table"]: r for r in json.loads(remote.run("status", "--tables", "--json").stdout)
        }
        assert status["public.b"]["state"] == "streaming"
        assert status["public.b"]["held_changes"] == 0
        assert status["public.a"]["rows_applied"] > 0
        assert not (here / "state.db").exists() and not (elsewhere / "state.db").exists()

        # the lock's own connection cut: nobody else took it, so the daemon takes it again
        assert cut_lock_connection(pg_third_dsn, daemon.pid) == 1
        wait_for(lambda: "the lock is taken again" in local.daemon_logs(), 30)
        execute(pg_dsn, "UPDATE a SET n = -1 WHERE id = 1")
        wait_for(lambda: same(pg_dsn, pg_target_dsn, "a"), 60)
        # cut again, and another process takes the lock first: the pipeline stops
        with psycopg.connect(pg_third_dsn, autocommit=True) as thief:
            assert cut_lock_connection(pg_third_dsn, daemon.pid) == 1
            thief.execute("SELECT pg_advisory_lock(hashtextextended('syncengine.pipeline:p', 0))")
            wait_for(
                lambda: "its lock was lost and taken by another process" in local.daemon_logs(), 30
            )
            execute(pg_dsn, "UPDATE a SET n = -2 WHERE id = 1")
            time.sleep(3)
            assert rows(pg_target_dsn, "SELECT n FROM a WHERE id = 1") == [(-1,)]
    finally:
        if daemon.poll() is None:
            local.stop(daemon)
