"""SIGTERM while the target bisects a group it mostly refuses: the daemon stops within a few
seconds, exits 0, commits nothing of that group; the next run applies it, nothing lost or
duplicated (accepted rows in the target, refused rows in dead letters, each exactly once).

The target table is created beforehand with a CHECK constraint the source does not have, so
nine rows in ten are refused and the group is bisected row by row: several seconds of work at
this size, more on a busy machine. Without the stop check the daemon finished the group first
(27 s at twice this size) and its dead letters were written, which the test also refuses.
"""

from __future__ import annotations

import json
import signal
import textwrap
import time

import pytest

from tests.e2e.harness import CLI, execute, rows, wait_for

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      strict:
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.refused], heartbeat: 0}
        target: {type: postgres, dsn: "${TGT_DSN}"}
        batch: {max_rows: 20000, max_wait: 200ms}
    """
)
ROWS = 3000
INSERT = f"INSERT INTO refused SELECT i, i FROM generate_series(1, {ROWS}) i"


def bisecting(dsn: str) -> bool:
    """The daemon's target session is inside savepoints (psycopg names them ``_pg3_…``)."""
    found = rows(
        dsn,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND query ~ '^(SAVEPOINT|RELEASE|ROLLBACK TO)'",
    )
    return found[0][0] > 0


@pytest.mark.timeout(900)  # the resume bisects every refused row, slow on a busy machine
@pytest.mark.parametrize("phase", ["stream", "backfill"])
def test_sigterm_during_bisection_stops_fast_and_resumes(phase, tmp_path, pg_dsn, pg_target_dsn):
    execute(pg_dsn, "CREATE TABLE refused (id int PRIMARY KEY, v int)")
    execute(pg_target_dsn, "CREATE TABLE refused (id int PRIMARY KEY, v int CHECK (v % 10 = 0))")
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    if phase == "backfill":
        execute(pg_dsn, "INSERT INTO refused VALUES (0, 0)", INSERT)
    daemon = cli.start("run")
    try:
        if phase == "stream":
            execute(pg_dsn, "INSERT INTO refused VALUES (0, 0)")
            wait_for(lambda: rows(pg_target_dsn, "SELECT count(*) FROM refused") == [(1,)], 60)
            execute(pg_dsn, INSERT)  # one transaction: one group
        wait_for(lambda: bisecting(pg_target_dsn), 60, interval=0.05)
        time.sleep(0.2)
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(30)
        took = time.monotonic() - started
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert code == 0, cli.daemon_logs()
    assert took < 5, f"SIGTERM took {took:.1f} s to be honoured\n{cli.daemon_logs()}"
    assert "Traceback" not in cli.daemon_logs()
    # nothing of the interrupted group was committed, and none of its rows was dead-lettered
    expected_before = [(1,)] if phase == "stream" else [(0,)]
    assert rows(pg_target_dsn, "SELECT count(*) FROM refused") == expected_before
    assert json.loads(cli.run("deadletters", "list", "--json").stdout) == []

    cli.run("sync", "--once", timeout=600)
    accepted = rows(pg_dsn, "SELECT id, v FROM refused WHERE v %% 10 = 0 ORDER BY id")
    assert rows(pg_target_dsn, "SELECT id, v FROM refused ORDER BY id") == accepted
    letters = json.loads(cli.run("deadletters", "list", "--json").stdout)
    refused_ids = [r[0] for r in rows(pg_dsn, "SELECT id FROM refused WHERE v %% 10 <> 0")]
    assert sorted(letter["payload"]["id"] for letter in letters) == sorted(refused_ids)
