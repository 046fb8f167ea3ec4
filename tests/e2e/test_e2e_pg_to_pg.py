"""Postgres → Postgres through the real CLI: sync --once, daemon, backfill, verify, metrics."""

from __future__ import annotations

import signal
import socket
import textwrap
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import CLI, execute, rows, wait_for

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      replica:
        source:
          type: postgres
          dsn: ${SRC_DSN}
          tables: [public.items]
          snapshot_chunk_rows: 500
        target: {type: postgres, dsn: "${TGT_DSN}"}
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)
SEED = (
    "CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int, price numeric(10,2), "
    "tags text[], doc jsonb, seen timestamptz)",
    "INSERT INTO items SELECT i, 'item ' || i, i % 7, i * 1.25, ARRAY['a', 'b' || i], "
    "jsonb_build_object('n', i), now() FROM generate_series(1, 3000) i",
)
SNAPSHOT = "SELECT id, name, qty, price, tags, doc::text FROM items ORDER BY id"


@pytest.fixture
def cli(tmp_path, pg_dsn, pg_target_dsn):
    execute(pg_dsn, *SEED)
    return CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})


def same(src: str, tgt: str) -> bool:
    return rows(src, SNAPSHOT) == rows(tgt, SNAPSHOT)


def test_sync_once_repeated_converges_and_verify_names_hand_edits(cli, pg_dsn, pg_target_dsn):
    cli.run("sync", "--once")
    assert same(pg_dsn, pg_target_dsn)
    execute(
        pg_dsn,
        "INSERT INTO items VALUES (5000, 'new', 1, 9.99, '{x}', '{\"n\": 0}', now())",
        "UPDATE items SET qty = qty + 100 WHERE id % 10 = 0",
        "DELETE FROM items WHERE id BETWEEN 100 AND 120",
    )
    result = cli.run("sync", "--once")
    assert "replica:" in result.stdout
    assert same(pg_dsn, pg_target_dsn)
    empty = cli.run("sync", "--once")
    assert "replica: 0 change(s) applied" in empty.stdout
    assert cli.run("verify").returncode == 0
    execute(
        pg_target_dsn,
        "UPDATE items SET name = 'hand edit' WHERE id = 42",
        "DELETE FROM items WHERE id = 43",
    )
    report = cli.run("verify", "--json", check=False)
    assert report.returncode == 1
    assert '"hand edit"' in report.stdout and "43" in report.stdout and '"name"' in report.stdout


def test_concurrent_runs_refuse(cli, pg_dsn, pg_target_dsn):
    daemon = cli.start("run")
    try:
        wait_for(lambda: same(pg_dsn, pg_target_dsn), timeout=90)
        second = cli.run("sync", "--once", check=False)
        assert second.returncode == 1
        assert "busy" in second.stderr and "'run'" in second.stderr
        assert "Traceback" not in second.stderr
        backfill = cli.run("backfill", check=False)
        assert backfill.returncode == 1 and "busy" in backfill.stderr
    finally:
        assert cli.stop(daemon) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_daemon_streams_live_changes_and_drains_on_sigterm(cli, pg_dsn, pg_target_dsn):
    port = free_port()
    daemon = cli.start("run", "--metrics-port", str(port))
    try:
        wait_for(lambda: same(pg_dsn, pg_target_dsn), timeout=90)
        execute(pg_dsn, "UPDATE items SET name = 'live' WHERE id = 7")
        took = wait_for(
            lambda: rows(pg_target_dsn, "SELECT name FROM items WHERE id = 7") == [("live",)],
            timeout=10,
        )
        assert took < 2.0, f"live change took {took:.2f}s"
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        applied = sum(
            s.value
            for s in families["syncengine_changes_applied"].samples
            if s.name.endswith("_total")
        )
        assert applied >= 3001
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status == 200
        execute(
            pg_dsn,
            "INSERT INTO items SELECT i, 'burst', 0, 1, '{}', '{}', now() "
            "FROM generate_series(10000, 10999) i",
        )
    finally:
        assert cli.stop(daemon, signal.SIGTERM) == 0
    daemon = cli.start("run")
    try:
        wait_for(lambda: same(pg_dsn, pg_target_dsn), timeout=60)
    finally:
        assert cli.stop(daemon) == 0


def test_backfill_interrupted_resumes_without_recopying(cli, pg_dsn, pg_target_dsn):
    execute(
        pg_dsn,
        "INSERT INTO items SELECT i, repeat('x', 200), 0, 1, '{}', '{}', now() "
        "FROM generate_series(3001, 60000) i",
    )
    proc = cli.start("backfill", "--parallel", "1")
    wait_for(
        lambda: rows(pg_target_dsn, "SELECT count(*) FROM items")[0][0] > 5000,
        timeout=60,
        interval=0.05,
    )
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 1, cli.daemon_logs()
    assert "interrupted" in cli.daemon_logs() and "Traceback" not in cli.daemon_logs()
    copied_before = rows(pg_target_dsn, "SELECT count(*) FROM items")[0][0]
    assert copied_before < 60000
    result = cli.run("backfill")
    assert same(pg_dsn, pg_target_dsn)
    assert "rows" in result.stderr  # progress lines
    reported = sum(
        int(line.split(": ")[1].split()[0])
        for line in result.stderr.splitlines()
        if line.startswith("public.items: ") and "rows copied" in line
    )
    assert reported <= 60000 - copied_before + 500 * 2, "done chunks were copied again"


def test_backfill_again_after_streaming_keeps_deletes(cli, pg_dsn, pg_target_dsn):
    """A second backfill upserts current rows; the deletes since the checkpoint still arrive."""
    cli.run("sync", "--once")
    execute(
        pg_dsn, "DELETE FROM items WHERE id <= 100", "UPDATE items SET name = 'x' WHERE id = 200"
    )
    cli.run("backfill")
    cli.run("sync", "--once")
    assert same(pg_dsn, pg_target_dsn)


def test_column_added_mid_stream_keeps_its_values(cli, pg_dsn, pg_target_dsn):
    cli.run("sync", "--once")
    execute(
        pg_dsn,
        "UPDATE items SET qty = 99 WHERE id = 1",
        "ALTER TABLE items ADD COLUMN plain text",
        "UPDATE items SET plain = 'late' WHERE id = 2",
        "INSERT INTO items (id, name, plain) VALUES (9001, 'z', 'new')",
    )
    cli.run("sync", "--once")
    query = "SELECT id, qty, plain FROM items WHERE id IN (1, 2, 9001) ORDER BY id"
    assert rows(pg_target_dsn, query) == rows(pg_dsn, query)
    assert rows(pg_target_dsn, query)[1:] == [(2, 2, "late"), (9001, None, "new")]
