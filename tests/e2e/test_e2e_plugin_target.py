"""A target kind from another package works with every command (issue 18).

The ``sqlitefile`` test plugin (tests/plugins/sqlitefile) is installed into a folder of its own
and found only through its ``syncengine.targets`` entry point: nothing in syncengine names it.
Against a real Postgres source, the real CLI validates it (its config model, its preflight, "did
you mean" from the registry), backfills, syncs, streams as a daemon, reports status and
verifies it.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.e2e.harness import CLI, execute, rows, wait_for
from tests.plugins.install import install

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      files:
        source:
          type: postgres
          dsn: ${SRC_DSN}
          tables: [public.items]
          snapshot_chunk_rows: 500
        target: {type: sqlitefile, path: "${OUT}"}
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)
SEED = (
    "CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int, price numeric(10,2), "
    "seen timestamptz)",
    "INSERT INTO items SELECT i, 'item ' || i, i % 7, i * 1.25, "
    "timestamptz '2026-01-01 00:00:00+00' + i * interval '1 minute' "
    "FROM generate_series(1, 2000) i",
)
SOURCE = "SELECT id, name, qty, price, seen FROM items ORDER BY id"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install("sqlitefile", tmp_path_factory.mktemp("site"))


@pytest.fixture
def cli(tmp_path: Path, pg_dsn: str, plugin_site: Path) -> CLI:
    execute(pg_dsn, *SEED)
    env = {"SRC_DSN": pg_dsn, "OUT": str(tmp_path / "out.db"), "PYTHONPATH": str(plugin_site)}
    return CLI(tmp_path, CONFIG, env)


def stored(path: Path) -> list[tuple[Any, ...]]:
    """The ``items`` rows in the plugin's file, read with sqlite3 and Arrow alone."""
    with sqlite3.connect(path) as db:
        blobs = db.execute("SELECT row FROM rows WHERE tbl = 'items'").fetchall()
    found = [r for (b,) in blobs for r in pa.ipc.open_stream(b).read_all().to_pylist()]
    columns = ("id", "name", "qty", "price", "seen")
    return sorted(tuple(r[c] for c in columns) for r in found)


def checkpoint_in(path: Path) -> str | None:
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT position FROM checkpoints").fetchone()
    return row[0] if row else None


def same(cli: CLI, pg_dsn: str) -> bool:
    return stored(cli.dir / "out.db") == rows(pg_dsn, SOURCE)


def test_validate_checks_the_plugin_kind_with_its_model_and_preflight(cli: CLI) -> None:
    assert "ok: 1 pipeline(s) valid: files" in cli.run("validate").stdout

    def problems(target: str) -> list[str]:
        cli.config.write_text(CONFIG.replace('{type: sqlitefile, path: "${OUT}"}', target))
        result = cli.run("validate", check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        return result.stderr.splitlines()[1:]

    assert problems("{type: sqlitefil, path: x.db}") == [
        "  pipelines.files.target.type: 'sqlitefil' is not a target type; did you mean "
        "'sqlitefile'? known: postgres, mongo, parquet, sqlitefile"
    ]
    assert problems("{type: sqlitefile, colour: red}") == [
        "  pipelines.files.target.path: required field is missing",
        "  pipelines.files.target.colour: unknown key (check the spelling)",
    ]
    (cli.dir / "junk.db").write_bytes(b"not a database at all")
    assert problems(f"{{type: sqlitefile, path: {cli.dir / 'junk.db'}}}") == [
        f"  pipelines.files.target: path: '{cli.dir / 'junk.db'}' is not a SQLite database; "
        "name a new file or a database"
    ]


def test_without_the_plugin_installed_the_kind_is_unknown(cli: CLI) -> None:
    cli.env.pop("PYTHONPATH")
    result = cli.run("validate", "--no-connect", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[1:] == [
        "  pipelines.files.target.type: 'sqlitefile' is not a target type; did you mean "
        "'postgres'? known: postgres, mongo, parquet"
    ]


def test_backfill_sync_status_and_verify(cli: CLI, pg_dsn: str) -> None:
    out = cli.dir / "out.db"
    cli.run("backfill")
    assert same(cli, pg_dsn) and len(stored(out)) == 2000
    execute(
        pg_dsn,
        "INSERT INTO items VALUES (5000, 'new', 1, 9.99, now())",
        "UPDATE items SET qty = qty + 100, price = price * 2 WHERE id % 10 = 0",
        "DELETE FROM items WHERE id BETWEEN 100 AND 120",
    )
    cli.run("sync", "--once")
    assert same(cli, pg_dsn)
    assert checkpoint_in(out) is not None
    cli.run("sync", "--once")  # nothing new: a replay-safe no-op (the position may move on)
    assert same(cli, pg_dsn)
    position = checkpoint_in(out)

    (status,) = json.loads(cli.run("status", "--json").stdout)
    assert status["pipeline"] == "files" and status.get("reachable", True)
    assert status["checkpoint"] == position  # read from the plugin's file through the target

    assert cli.run("verify").returncode == 0
    with sqlite3.connect(out) as db:
        db.execute("DELETE FROM rows WHERE tbl = 'items' AND row_key = ?", ('{"id":7}',))
    report = cli.run("verify", "--json", check=False)
    assert report.returncode == 1
    (table,) = json.loads(report.stdout)["files"]
    assert table["missing_in_target"] == [7] and table["target_rows"] == 1979


def test_daemon_streams_into_the_plugin_and_drains_on_sigterm(cli: CLI, pg_dsn: str) -> None:
    daemon = cli.start("run")
    try:
        wait_for(lambda: same(cli, pg_dsn), timeout=90)
        execute(pg_dsn, "UPDATE items SET name = 'live' WHERE id = 7")
        wait_for(lambda: same(cli, pg_dsn), timeout=30)
    finally:
        assert cli.stop(daemon, signal.SIGTERM) == 0
    assert ("live",) in [(r[1],) for r in stored(cli.dir / "out.db") if r[0] == 7]
