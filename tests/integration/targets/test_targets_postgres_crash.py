"""SIGKILL at each step of the Postgres apply transaction (and at random instants): the target
and its checkpoint stay consistent, and a rerun ends with target == expected."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tests.integration.targets.targets_pg_worker import STREAM, batches, expected

ROOT = Path(__file__).resolve().parents[3]
POINTS = [
    "postgres.after_stage",
    "postgres.after_data",
    "postgres.after_shadow",
    "postgres.before_commit",
    "postgres.after_commit",
]


def worker(dsn: str, table: str, *extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "SYNCENGINE_FAULT"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.targets.targets_pg_worker", dsn, table, *extra],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
    )


def observed(dsn: str, table: str) -> tuple[str | None, dict, set]:
    """(checkpoint, table rows, shadow rows) read in one snapshot."""
    with psycopg.connect(dsn) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        found = conn.execute(
            "SELECT to_regclass('_syncengine.checkpoints'), to_regclass(%s)", (f'"{table}"',)
        ).fetchone()
        if found[0] is None or found[1] is None:  # killed before the first commit
            return None, {}, set()
        cp = conn.execute(
            "SELECT position FROM _syncengine.checkpoints WHERE pipeline = %s AND stream = %s",
            (table, STREAM),
        ).fetchone()
        rows = conn.execute(
            sql.SQL("SELECT id, name, note FROM {}").format(sql.Identifier(table))
        ).fetchall()
        shadow = conn.execute(
            "SELECT row_key FROM _syncengine.shadow WHERE pipeline = %s", (table,)
        ).fetchall()
    state = {r[0]: {"id": r[0], "name": r[1], "note": r[2]} for r in rows}
    return (cp[0] if cp else None), state, {r[0] for r in shadow}


def assert_consistent(dsn: str, table: str, count: int = 12) -> str | None:
    checkpoint, state, shadow = observed(dsn, table)
    want = expected(batches(table, count), checkpoint) if checkpoint else {}
    assert state == want
    assert shadow == {f"[{k}]" for k in want}  # shadow moved with the data
    return checkpoint


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_at_each_step_then_rerun(pg_target_dsn: str, point: str) -> None:
    table = f"kill_{POINTS.index(point)}"
    proc = worker(pg_target_dsn, table, "--kill-batch", "5", "--kill-point", point)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    checkpoint = assert_consistent(pg_target_dsn, table)
    last_before = batches(table)[4].last_position
    if point == "postgres.after_commit":
        assert checkpoint == batches(table)[5].last_position  # batch 5 committed, then died
    else:
        assert checkpoint == last_before  # batch 5 rolled back whole
    rerun = worker(pg_target_dsn, table)
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err.decode()[-2000:]
    assert assert_consistent(pg_target_dsn, table) == batches(table)[-1].last_position


def test_sigkill_at_random_instants(pg_target_dsn: str) -> None:
    rng = random.Random(11)
    table = "kill_random"
    count = "60"
    previous = None
    for _ in range(2):
        proc = worker(pg_target_dsn, table, "--count", count)
        # wait until this run has committed something, then kill at a random instant
        deadline = time.monotonic() + 60
        while observed(pg_target_dsn, table)[0] == previous and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        checkpoint = assert_consistent(pg_target_dsn, table, int(count))
        assert checkpoint is not None and (previous is None or checkpoint > previous)
        previous = checkpoint
    rerun = worker(pg_target_dsn, table, "--count", count)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()[-2000:]
    final = assert_consistent(pg_target_dsn, table, int(count))
    assert final == batches(table, int(count))[-1].last_position
