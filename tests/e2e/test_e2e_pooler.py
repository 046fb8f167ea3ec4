"""A target reached through PgBouncer, as many production databases are.

In session mode the engine works as on a direct connection. In transaction mode PgBouncer
hands each transaction whichever server session is free, and the engine's sessions hold state
(psycopg's prepared statements, temporary staging tables, pinned settings): it stops with an
error that says so and what to do — before, "prepared statement "_pg3_0" already exists" again
on every run — and nothing is lost: pointed at the database itself, it carries on.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.e2e.harness import CLI, execute, rows
from tests.servers import free_port

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      replica:
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.items]}
        target: {type: postgres, dsn: "${TGT_DSN}"}
        conflicts: {strategy: local}
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)
ITEMS = "SELECT id, note FROM items ORDER BY id"


@contextlib.contextmanager
def pgbouncer(dsn: str, mode: str) -> Iterator[str]:
    """A PgBouncer in ``mode`` in front of ``dsn``'s server; yields the DSN through it."""
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not os.path.exists(binary):
        pytest.skip("pgbouncer is not installed (./scripts/setup installs it)")
    parts = conninfo_to_dict(dsn)
    root = Path(tempfile.mkdtemp(prefix="syncengine-pgbouncer-"))
    port = free_port()
    (root / "users.txt").write_text('"postgres" ""\n')
    (root / "pgbouncer.ini").write_text(
        textwrap.dedent(
            f"""
            [databases]
            * = host=127.0.0.1 port={parts["port"]}
            [pgbouncer]
            listen_addr = 127.0.0.1
            listen_port = {port}
            unix_socket_dir =
            auth_type = trust
            auth_file = {root}/users.txt
            pool_mode = {mode}
            default_pool_size = 2
            max_client_conn = 100
            logfile = {root}/pgbouncer.log
            pidfile = {root}/pgbouncer.pid
            ignore_startup_parameters = extra_float_digits,options
            """
        )
    )
    argv = [binary, "-d", str(root / "pgbouncer.ini")]
    if os.geteuid() == 0:  # it refuses to run as root
        user = pwd.getpwnam("postgres")
        for path in (root, *root.iterdir()):
            os.chown(path, user.pw_uid, user.pw_gid)
        argv[1:1] = ["-u", "postgres"]
    subprocess.run(argv, check=True)
    through = make_conninfo(**{**parts, "port": port})
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                psycopg.connect(through).close()
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield through
    finally:
        os.kill(int((root / "pgbouncer.pid").read_text()), signal.SIGTERM)
        shutil.rmtree(root, ignore_errors=True)


def _changes(dsn: str, round_: int) -> None:
    execute(
        dsn,
        f"UPDATE items SET note = 'r{round_}' WHERE id % {round_ + 2} = 0",
        f"DELETE FROM items WHERE id % {round_ + 11} = 0",
        f"INSERT INTO items SELECT i, 'new' FROM generate_series({200_000 + round_ * 100}, "
        f"{200_099 + round_ * 100}) i",
    )


@pytest.fixture
def seeded(pg_dsn: str) -> str:
    execute(
        pg_dsn,
        "CREATE TABLE items (id bigint PRIMARY KEY, note text)",
        "INSERT INTO items SELECT i, 'a' FROM generate_series(1, 100000) i",
    )
    return pg_dsn


def test_through_a_session_mode_pool_it_works_as_directly(tmp_path, seeded, pg_target_dsn):
    with pgbouncer(pg_target_dsn, "session") as through:
        cli = CLI(tmp_path, CONFIG, {"SRC_DSN": seeded, "TGT_DSN": through})
        cli.run("sync", "--once")
        for round_ in range(2):
            _changes(seeded, round_)
            cli.run("sync", "--once")
        assert rows(pg_target_dsn, ITEMS) == rows(seeded, ITEMS)
        assert cli.run("verify").returncode == 0


def test_a_transaction_mode_pool_is_named_and_nothing_is_lost(tmp_path, seeded, pg_target_dsn):
    failures = []
    with pgbouncer(pg_target_dsn, "transaction") as through:
        cli = CLI(tmp_path, CONFIG, {"SRC_DSN": seeded, "TGT_DSN": through})
        cli.run("sync", "--once", check=False)
        for round_ in range(3):
            _changes(seeded, round_)
            result = cli.run("sync", "--once", check=False)
            if result.returncode:
                failures.append(result.stderr)
    assert failures, "no run met the pooler: nothing was tested"
    for stderr in failures:
        assert "pooler in transaction mode" in stderr and "session mode" in stderr, stderr
        assert "Traceback" not in stderr
    # the same pipeline, pointed at the database itself: everything arrives
    direct = CLI(tmp_path, CONFIG, {"SRC_DSN": seeded, "TGT_DSN": pg_target_dsn})
    direct.run("sync", "--once")
    assert rows(pg_target_dsn, ITEMS) == rows(seeded, ITEMS)
    assert direct.run("verify").returncode == 0


def test_validate_refuses_a_source_a_replication_connection_cannot_reach(
    tmp_path, seeded, pg_target_dsn
):
    """The stream's connection (``replication=database``) cannot pass a pooler; before,
    ``validate`` said ok and the first ``sync`` stopped at "unsupported startup parameter"."""
    with pgbouncer(seeded, "transaction") as through:
        cli = CLI(tmp_path, CONFIG, {"SRC_DSN": through, "TGT_DSN": pg_target_dsn})
        result = cli.run("validate", check=False, timeout=60)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "cannot open a replication connection" in out and "pooler" in out, out
    cli.env["SRC_DSN"] = seeded
    assert cli.run("validate").returncode == 0
