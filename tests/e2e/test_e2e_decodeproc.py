"""The daemon and its pgoutput decode process (sources/postgres/decodeproc.py), through the real
CLI: SIGTERM stops both, a killed daemon leaves no decode process behind, a killed decode
process is retried and the stream goes on."""

from __future__ import annotations

import os
import signal
import textwrap
from pathlib import Path

import pytest

from tests.e2e.harness import CLI, execute, rows, wait_for

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      replica:
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.items]}
        target: {type: postgres, dsn: "${TGT_DSN}"}
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)
SEED = (
    "CREATE TABLE items (id bigint PRIMARY KEY, name text)",
    "INSERT INTO items SELECT i, 'item ' || i FROM generate_series(1, 100) i",
)


@pytest.fixture
def cli(tmp_path, pg_dsn, pg_target_dsn):
    execute(pg_dsn, *SEED)
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "SYNCENGINE_PG_DECODE": "process"}
    return CLI(tmp_path, CONFIG, env)


def decode_children(parent: int) -> list[int]:
    """Live decode processes whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == parent and stat[0] != "Z" and b"decodechild" in cmdline:
            found.append(int(entry.name))
    return found


def the_child(daemon: int) -> int:
    """The daemon's one decode process, once it streams (after its backfill)."""
    wait_for(lambda: len(decode_children(daemon)) == 1, timeout=60)
    (child,) = decode_children(daemon)
    return child


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that never comes counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def live_change(pg_dsn: str, pg_target_dsn: str, name: str) -> None:
    execute(pg_dsn, f"UPDATE items SET name = '{name}' WHERE id = 7")
    wait_for(
        lambda: rows(pg_target_dsn, "SELECT name FROM items WHERE id = 7") == [(name,)],
        timeout=60,
    )


def test_sigterm_stops_the_daemon_and_its_decode_process(cli, pg_dsn, pg_target_dsn):
    daemon = cli.start("run")
    try:
        live_change(pg_dsn, pg_target_dsn, "streaming")
        child = the_child(daemon.pid)
    finally:
        assert cli.stop(daemon, signal.SIGTERM) == 0
    assert not alive(child)
    assert "Traceback" not in cli.daemon_logs()


def test_a_killed_daemon_leaves_no_decode_process(cli, pg_dsn, pg_target_dsn):
    daemon = cli.start("run")
    try:
        live_change(pg_dsn, pg_target_dsn, "streaming")
        child = the_child(daemon.pid)
    finally:
        daemon.kill()
        daemon.wait(30)
    wait_for(lambda: not alive(child), timeout=10)


def test_a_killed_decode_process_is_retried_and_the_stream_goes_on(cli, pg_dsn, pg_target_dsn):
    daemon = cli.start("run")
    try:
        live_change(pg_dsn, pg_target_dsn, "before")
        child = the_child(daemon.pid)
        os.kill(child, signal.SIGKILL)
        live_change(pg_dsn, pg_target_dsn, "after")
        again = the_child(daemon.pid)
        assert again != child
    finally:
        assert cli.stop(daemon, signal.SIGTERM) == 0
    assert "decode process" in cli.daemon_logs() and "killed by SIGKILL" in cli.daemon_logs()


def test_sync_every_drains_each_round_with_one_decode_process(cli, pg_dsn, pg_target_dsn):
    """``sync --every``: each round's drain starts its decode process before the round
    builds its pipeline and leaves no spare beside it, so at most one runs at any time;
    changes made between rounds arrive; SIGTERM between rounds exits cleanly, children
    included."""
    syncer = cli.start("sync", "--every", "1s")
    seen: set[int] = set()
    most = 0

    def changed(name: str) -> bool:
        nonlocal most
        children = decode_children(syncer.pid)
        seen.update(children)
        most = max(most, len(children))
        return rows(pg_target_dsn, "SELECT name FROM items WHERE id = 7") == [(name,)]

    try:
        wait_for(lambda: len(rows(pg_target_dsn, "SELECT id FROM items")) == 100, timeout=60)
        for name in ("round a", "round b", "round c"):
            execute(pg_dsn, f"UPDATE items SET name = '{name}' WHERE id = 7")
            wait_for(lambda name=name: changed(name), timeout=60, interval=0.02)
    finally:
        assert cli.stop(syncer, signal.SIGTERM) == 0
    assert most == 1 and len(seen) >= 2  # a new child per round, never two at once
    wait_for(lambda: not any(alive(pid) for pid in seen), timeout=10)
    assert "Traceback" not in cli.daemon_logs()
