"""Killed backfills, resumed: a table the interrupted run never planned is still copied.

A resumed Postgres backfill continues the chunks its state store holds. A table with no chunk
rows at all (the interrupted run was limited to other tables with ``--table``, or the config
gained the table since) must be planned and copied by the resumed run, not skipped: the
backfill ends with a checkpoint, and the stream only carries changes after it.
"""

from __future__ import annotations

import textwrap

from tests.e2e.harness import CLI, execute, rows

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      resume:
        source:
          type: postgres
          dsn: ${SRC_DSN}
          tables: [public.first, public.second]
          snapshot_chunk_rows: 100
        target: {type: postgres, dsn: "${TGT_DSN}"}
        batch: {max_rows: 100, max_wait: 100ms}
    """
)

ROWS = 1_000


def _seed(dsn: str) -> None:
    execute(
        dsn,
        "CREATE TABLE first (id int PRIMARY KEY, v text)",
        "CREATE TABLE second (id int PRIMARY KEY, v text)",
        f"INSERT INTO first SELECT g, 'f' || g FROM generate_series(1, {ROWS}) g",
        f"INSERT INTO second SELECT g, 's' || g FROM generate_series(1, {ROWS}) g",
    )


def _table(dsn: str, table: str) -> list[tuple[object, ...]]:
    return rows(dsn, f"SELECT id, v FROM {table} ORDER BY id")  # test-owned table names


def _killed(cli: CLI, *args: str, point: str) -> None:
    """Run ``syncengine args`` until it SIGKILLs itself at the fault point ``point``."""
    cli.env["SYNCENGINE_FAULT"] = f"{point}:kill"
    try:
        result = cli.run(*args, check=False)
    finally:
        del cli.env["SYNCENGINE_FAULT"]
    assert result.returncode == -9, result.stdout + result.stderr


def test_resumed_backfill_copies_a_table_the_killed_run_never_planned(
    tmp_path, pg_dsn, pg_target_dsn
):
    _seed(pg_dsn)
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    # killed after its first committed chunk: chunk rows exist for ``first`` only
    _killed(cli, "backfill", "--table", "public.first", point="postgres.passthrough_after_commit")
    copied = rows(pg_target_dsn, "SELECT count(*) FROM first")[0][0]
    assert 0 < copied < ROWS
    execute(
        pg_dsn, "UPDATE second SET v = 'changed' WHERE id <= 10", "DELETE FROM first WHERE id = 1"
    )
    cli.run("backfill")
    execute(
        pg_dsn, "INSERT INTO second VALUES (100000, 'after')", "DELETE FROM second WHERE id = 2"
    )
    cli.run("sync", "--once")
    for table in ("first", "second"):
        assert _table(pg_target_dsn, table) == _table(pg_dsn, table), table
