"""Secrets and access: passwords never printed, state owner-only, metrics on loopback, TLS.

The password scans run every way a run can fail (bad port, bad option, a password with a
stray ``%``, unreachable target, a poison row, ``--debug``, JSON logs) and then read *all*
output: stdout/stderr of every command, the daemon logs, ``status`` (text and JSON), the
``/metrics`` page, ``deadletters list --json`` and the bytes of the state files.
"""

from __future__ import annotations

import os
import stat
import textwrap
import time
import urllib.request

import psycopg
import pytest

from tests.e2e.harness import CLI, execute, rows, wait_for
from tests.reliability.rel_support import (
    Daemon,
    record,
    run_with_options,
    scan_for,
    state_files,
)
from tests.servers import free_port

SECRET = "Hunter2-s3cret"
ROLE = f"CREATE ROLE app LOGIN SUPERUSER PASSWORD '{SECRET}'"

PG_TO_PG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      secret:
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.items]}
        target: {type: postgres, dsn: "${TGT_DSN}"}
        batch: {max_rows: 100, max_wait: 100ms}
    """
)


def with_password(dsn: str, password: str = SECRET) -> str:
    """postgresql://postgres@h:p/db → postgresql://app:<password>@h:p/db."""
    return dsn.replace("postgresql://postgres@", f"postgresql://app:{password}@")


@pytest.fixture
def app_role(pg_server):
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'app'").fetchone()
        if not exists:
            conn.execute(ROLE)


def all_output(cli: CLI, *extra: str) -> str:
    return "\n".join([*cli.logs, cli.daemon_logs(), *extra])


def assert_no_secret(text: str, secret: str = SECRET) -> None:
    leaks = scan_for(secret, text)
    assert not leaks, f"password printed in {len(leaks)} line(s): {leaks[:5]}"


def state_bytes(cli: CLI) -> bytes:
    return b"".join(p.read_bytes() for p in state_files(cli.dir / "state.db"))


def test_password_never_printed_on_success_or_failure(tmp_path, app_role, pg_dsn, pg_target_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE items (id int PRIMARY KEY, qty int)",
        "INSERT INTO items SELECT i, i FROM generate_series(1, 50) i",
    )
    execute(pg_target_dsn, "CREATE TABLE items (id int PRIMARY KEY, qty int CHECK (qty < 40))")
    src, tgt = with_password(pg_dsn), with_password(pg_target_dsn)
    cli = CLI(tmp_path, PG_TO_PG, {"SRC_DSN": src, "TGT_DSN": tgt})
    daemon = Daemon(cli).start()
    port = daemon.port
    try:
        # rows 40..50 violate the target's CHECK: dead letters whose reason is a server error
        wait_for(lambda: rows(pg_target_dsn, "SELECT count(*) FROM items")[0][0] == 39, 90)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read()
    finally:
        assert daemon.stop() == 0, daemon.tail()
    outputs = [metrics.decode(), health.decode()]
    for args in (("status",), ("status", "--json"), ("deadletters", "list", "--json")):
        outputs.append(cli.run(*args, check=False).stdout)
    assert '"stage"' in outputs[-1], "the CHECK violations should be dead letters"
    runs = 0
    failing = {
        "unreachable port": src.replace(f":{pg_dsn.split(':')[-1].split('/')[0]}/", ":1/"),
        "bad option": src + "?sslmode=bogus",
        "stray percent": with_password(pg_dsn, "Hunter2%ZZs3cret"),
        "key=value form": f"host=127.0.0.1 port=1 user=app password='{SECRET}' dbname=x",
    }
    leaks: list[str] = []
    for name, dsn in failing.items():
        for side in ("SRC_DSN", "TGT_DSN"):
            where = tmp_path / f"{name}-{side}"
            where.mkdir()
            bad = CLI(where, PG_TO_PG, {**cli.env, side: dsn})
            commands = [([], "validate"), ([], "status", "--json")]
            if name != "unreachable port":  # its retries take minutes; validate says enough
                commands.append(([], "sync", "--once"))
            if side == "SRC_DSN" and name != "unreachable port":
                commands.append((["--log-format", "json"], "sync", "--once"))
            for options, *args in commands:
                result = run_with_options(bad, options, *args)
                runs += 1
                if args[0] != "status":
                    assert result.returncode in (1, 2, 3), f"{name} {args}: {result}"
                assert "Traceback" not in result.stderr, f"{name} {args}: {result.stderr}"
            if name == "bad option":  # tracebacks are allowed with --debug; secrets are not
                assert run_with_options(bad, ["--debug"], "sync", "--once").returncode != 0
                runs += 1
            for secret in (SECRET, "Hunter2%ZZs3cret"):
                leaks += [f"{name}/{side}: {line}" for line in scan_for(secret, all_output(bad))]
    assert not leaks, f"password printed in {len(leaks)} line(s):\n" + "\n".join(leaks[:12])
    assert_no_secret(all_output(cli, *outputs))
    assert SECRET.encode() not in state_bytes(cli), "password stored in the state file"
    record("secrets", inputs=runs + 3)


MONGO_SOURCE = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      msecret:
        source: {type: mongo, uri: "${MONGO_URI}", database: app, collections: [users]}
        target: {type: postgres, dsn: "${TGT_DSN}"}
    """
)


@pytest.mark.parametrize("server", ["unreachable", "reachable"])
def test_mongo_uri_password_never_printed(tmp_path, app_role, pg_target_dsn, mongo_uri, server):
    port = free_port() if server == "unreachable" else int(mongo_uri.split(":")[2].split("/")[0])
    uri = f"mongodb://app:{SECRET}@127.0.0.1:{port}/?serverSelectionTimeoutMS=2000"
    if server == "reachable":  # the server refuses (or ignores) the credentials
        uri += "&directConnection=true&authSource=admin"
    cli = CLI(tmp_path, MONGO_SOURCE, {"MONGO_URI": uri, "TGT_DSN": with_password(pg_target_dsn)})
    for args in (("validate",), ("status", "--json")):
        result = cli.run(*args, check=False, timeout=180)
        assert "Traceback" not in result.stderr, result.stderr
    daemon = Daemon(cli).start()
    try:  # retrying (unreachable) or running (the server ignores credentials): either prints
        wait_for(lambda: daemon.state() not in (None, "starting") or not daemon.alive(), 60)
        time.sleep(2)
        outputs = [daemon.state() or ""]
    finally:
        daemon.stop()
    assert_no_secret(all_output(cli, *outputs))


def test_state_files_are_owner_only(tmp_path, pg_dsn, pg_target_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE items (id int PRIMARY KEY, qty int)",
        "INSERT INTO items VALUES (1, 1)",
    )
    old = os.umask(0o022)  # the common default: files world-readable unless made otherwise
    try:
        cli = CLI(tmp_path, PG_TO_PG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
        cli.run("sync", "--once")
        cli.run("deadletters", "list")
    finally:
        os.umask(old)
    files = state_files(tmp_path / "state.db")
    assert tmp_path / "state.db" in files
    loose = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert all(int(mode, 8) & 0o077 == 0 for mode in loose.values()), loose


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a LISTEN socket on ``port``, from /proc/net/tcp{,6}."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_metrics_bind_to_loopback_by_default(tmp_path, pg_dsn, pg_target_dsn):
    execute(pg_dsn, "CREATE TABLE items (id int PRIMARY KEY, qty int)")
    cli = CLI(tmp_path, PG_TO_PG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    daemon = Daemon(cli).start()  # --metrics-port given, --metrics-host not
    port = daemon.port
    try:
        wait_for(lambda: listening_addresses(port), timeout=60)
        addresses = listening_addresses(port)
    finally:
        assert daemon.stop() == 0, daemon.tail()
    assert addresses == {"0100007F"}, f"/metrics listens on {addresses} (want 127.0.0.1 only)"
