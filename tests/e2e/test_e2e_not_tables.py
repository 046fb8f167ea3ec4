"""What logical replication cannot publish, named for what it is.

Before: a view or a sequence in ``tables:`` was told to set REPLICA IDENTITY FULL, a
materialized view to add a primary key (neither possible), and an UNLOGGED table passed
``validate`` and failed at opening with "cannot add relation "x" to publication".
"""

from __future__ import annotations

import textwrap

import pytest

from tests.e2e.harness import CLI, execute, rows

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      p:
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.a, public.x]}
        target: {type: postgres, dsn: "${TGT_DSN}"}
    """
)


@pytest.mark.parametrize(
    ("ddl", "said"),
    [
        ("CREATE VIEW x AS SELECT * FROM a", "is a view, which logical replication cannot"),
        ("CREATE MATERIALIZED VIEW x AS SELECT * FROM a", "is a materialized view"),
        ("CREATE SEQUENCE x", "is a sequence"),
        (
            "CREATE UNLOGGED TABLE x (id int PRIMARY KEY)",
            "is UNLOGGED: its changes are not written to the WAL",
        ),
    ],
    ids=["view", "matview", "sequence", "unlogged"],
)
def test_what_cannot_be_published_is_named(tmp_path, pg_dsn, pg_target_dsn, ddl, said):
    execute(pg_dsn, "CREATE TABLE a (id int PRIMARY KEY)", "INSERT INTO a VALUES (1)", ddl)
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    for command, code in ((("validate",), 2), (("sync", "--once"), 1)):
        result = cli.run(*command, check=False)
        out = result.stdout + result.stderr
        assert result.returncode == code, out
        assert f"tables: 'public.x' {said}" in out
        assert "REPLICA IDENTITY" not in out and "Traceback" not in out
    if "UNLOGGED" in ddl:  # the fix it names works
        execute(pg_dsn, "ALTER TABLE x SET LOGGED", "INSERT INTO x VALUES (5)")
        cli.run("sync", "--once")
        execute(pg_dsn, "INSERT INTO x VALUES (6)")
        cli.run("sync", "--once")
        assert rows(pg_target_dsn, "SELECT id FROM x ORDER BY id") == [(5,), (6,)]
