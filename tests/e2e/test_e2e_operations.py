"""status and checkpoints through the real CLI."""

from __future__ import annotations

import json
import subprocess
import textwrap

from tests.e2e.harness import CLI, EXE, execute, rows

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      ops:
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.t]}
        target: {type: postgres, dsn: "${TGT_DSN}"}
    """
)


def test_status_and_checkpoints(tmp_path, pg_dsn, pg_target_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE t (id int PRIMARY KEY, v text)",
        "INSERT INTO t SELECT i, 'v' FROM generate_series(1, 50) i",
    )
    secret_dsn = pg_dsn.replace("postgres@", "postgres:Sup3r-s3cret@")
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": secret_dsn, "TGT_DSN": pg_target_dsn})
    cli.run("sync", "--once")
    execute(pg_dsn, "UPDATE t SET v = 'w' WHERE id < 5")
    cli.run("sync", "--once")

    status = cli.run("status", "--json")
    assert "Sup3r-s3cret" not in status.stdout + status.stderr
    (info,) = json.loads(status.stdout)
    assert info["pipeline"] == "ops" and info["checkpoint"]
    assert info["rows_applied"] >= 54 and info["dead_letters"] == 0
    assert info["lag_bytes"] is not None and info["retained_wal_bytes"] is not None
    assert "ops" in cli.run("status").stdout

    shown = cli.run("checkpoints", "show", "--json")
    (checkpoint,) = json.loads(shown.stdout)
    assert checkpoint["position"] == info["checkpoint"]
    config_first = subprocess.run(
        [EXE, "checkpoints", str(cli.config), "show"], capture_output=True, text=True, env=cli.env
    )
    assert info["checkpoint"] in config_first.stdout

    cli.run("checkpoints", "reset", "--pipeline", "ops", "--yes")
    (after,) = json.loads(cli.run("checkpoints", "show", "--json").stdout)
    assert after["position"] is None
    execute(pg_target_dsn, "DELETE FROM t WHERE id > 40")
    cli.run("sync", "--once")  # no checkpoint: backfills again
    assert rows(pg_target_dsn, "SELECT count(*) FROM t") == [(50,)]

    slot = "syncengine_ops"
    assert rows(
        pg_dsn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    ) == [(1,)]
    dropped = cli.run("checkpoints", "drop-slot", "--pipeline", "ops", "--yes")
    assert "dropped" in dropped.stdout
    assert rows(
        pg_dsn, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    ) == [(0,)]
    execute(pg_dsn, "INSERT INTO t VALUES (51, 'after')")
    cli.run("sync", "--once")  # new slot, fresh backfill
    assert rows(pg_target_dsn, "SELECT count(*) FROM t") == [(51,)]
