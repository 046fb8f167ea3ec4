"""A publication the user made (``source.publication``) that does not carry every change.

Before: ``validate`` passed and ``sync`` ran on a publication without ``delete`` (rows deleted
at the source stayed at the target), with a row filter (the copy took every row, the stream
only matching ones), with a column list (the other columns arrived NULL), or without
``publish_via_partition_root`` for a partitioned table (``sync`` failed at opening with
Postgres's own message). Now each is named with its fix, and nothing is synced until then.
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
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.a], publication: mine}
        target: {type: postgres, dsn: "${TGT_DSN}"}
    """
)
TABLE = "CREATE TABLE a (id int PRIMARY KEY, v text, region text)"


def _refused(cli: CLI, *expected: str) -> None:
    for command, code in ((("validate",), 2), (("sync", "--once"), 1)):
        result = cli.run(*command, check=False)
        out = result.stdout + result.stderr
        assert result.returncode == code, out
        assert "Traceback" not in out
        for text in expected:
            assert text in out, out


def _mirrors(cli: CLI, pg_dsn: str, pg_target_dsn: str) -> None:
    execute(pg_dsn, "INSERT INTO a VALUES (1, 'x', 'eu'), (2, 'y', 'us')")
    cli.run("sync", "--once")
    execute(
        pg_dsn,
        "INSERT INTO a VALUES (3, 'z', 'us')",
        "UPDATE a SET v = 'y2' WHERE id = 2",
        "DELETE FROM a WHERE id = 1",
    )
    cli.run("sync", "--once")
    query = "SELECT id, v, region FROM a ORDER BY id"
    assert rows(pg_target_dsn, query) == rows(pg_dsn, query) == [(2, "y2", "us"), (3, "z", "us")]


@pytest.mark.parametrize(
    ("publication", "expected"),
    [
        (
            "CREATE PUBLICATION mine FOR TABLE a WITH (publish = 'insert, update')",
            ["mine does not publish delete, truncate", "SET (publish = 'insert, update, delete"],
        ),
        (
            "CREATE PUBLICATION mine FOR TABLE a WHERE (id > 1)",
            ["publishes only the rows of public.a matching WHERE (id > 1)", "DROP TABLE public.a"],
        ),
        (
            "CREATE PUBLICATION mine FOR TABLE a (id, v)",
            ["publishes only some columns of public.a", "ADD TABLE public.a"],
        ),
    ],
    ids=["no-delete", "row-filter", "column-list"],
)
def test_a_publication_that_leaves_changes_out_is_refused(
    tmp_path, pg_dsn, pg_target_dsn, publication, expected
):
    execute(pg_dsn, TABLE, publication)
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    _refused(cli, *expected)
    execute(pg_dsn, "DROP PUBLICATION mine", "CREATE PUBLICATION mine FOR TABLE a")
    _mirrors(cli, pg_dsn, pg_target_dsn)


def test_a_partitioned_table_needs_its_root(tmp_path, pg_dsn, pg_target_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE a (id int, v text, region text, PRIMARY KEY (id, region)) "
        "PARTITION BY LIST (region)",
        "CREATE TABLE a_eu PARTITION OF a FOR VALUES IN ('eu')",
        "CREATE TABLE a_us PARTITION OF a FOR VALUES IN ('us')",
        "CREATE PUBLICATION mine FOR TABLE a",
    )
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    _refused(cli, "publishes the partitions of public.a", "publish_via_partition_root = true")
    execute(pg_dsn, "ALTER PUBLICATION mine SET (publish_via_partition_root = true)")
    _mirrors(cli, pg_dsn, pg_target_dsn)


def test_a_publication_for_all_tables_is_fine(tmp_path, pg_dsn, pg_target_dsn):
    execute(pg_dsn, TABLE, "CREATE PUBLICATION mine FOR ALL TABLES")
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    cli.run("validate")
    _mirrors(cli, pg_dsn, pg_target_dsn)
