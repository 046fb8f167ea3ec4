"""A column carried as Postgres text in one batch and natively in the next hashes alike
(issue 23): under a strategy that reads the target back, a key written from a batch that holds
``time '24:00'`` in another row and later changed in an ordinary batch is no conflict, while a
genuine edit at the target still is. Postgres → Postgres, real servers."""

from __future__ import annotations

import textwrap

import pytest

from tests.e2e.harness import CLI, execute, rows

CONFIG = textwrap.dedent(
    """
    state: ${{SYNCENGINE_STATE}}
    pipelines:
      clock:
        source: {{type: postgres, dsn: "${{SRC_DSN}}", tables: [public.c]}}
        target: {{type: postgres, dsn: "${{TGT_DSN}}"}}
        conflicts: {{strategy: {strategy}}}
        batch: {{max_rows: 100, max_wait: 100ms}}
    """
)
CONFLICTS = "conflict(s) under"
TABLE = "SELECT id, t::text, note FROM c ORDER BY id"


@pytest.mark.parametrize("strategy", ["local", "merge"])
def test_text_then_native_batch_is_no_conflict(tmp_path, pg_dsn, pg_target_dsn, strategy):
    execute(pg_dsn, "CREATE TABLE c (id int PRIMARY KEY, t time, note text)")
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn}
    cli = CLI(tmp_path, CONFIG.format(strategy=strategy), env)
    cli.run("sync", "--once")
    # one batch: row 2 holds 24:00, so the whole column travels as text
    execute(pg_dsn, "INSERT INTO c VALUES (1, '10:00', 'a'), (2, '24:00', 'b'), (3, '11:00', 'c')")
    first = cli.run("sync", "--once")
    assert CONFLICTS not in first.stderr, first.stderr
    assert rows(pg_target_dsn, TABLE) == rows(pg_dsn, TABLE)

    # ordinary values only: the column travels natively; row 1 must apply, no conflict
    execute(pg_dsn, "UPDATE c SET t = '12:30:00.5' WHERE id = 1")
    second = cli.run("sync", "--once")
    assert CONFLICTS not in second.stderr, second.stderr
    assert rows(pg_target_dsn, TABLE) == rows(pg_dsn, TABLE)
    assert rows(pg_target_dsn, "SELECT t::text FROM c WHERE id = 1") == [("12:30:00.5",)]

    # and back: row 1 changed again in a batch carrying the column as text (a new 24:00 row;
    # the target reads row 1 back natively)
    execute(
        pg_dsn,
        "BEGIN",
        "UPDATE c SET t = '14:00' WHERE id = 1",
        "INSERT INTO c VALUES (4, '24:00', 'd')",
        "COMMIT",
    )
    back = cli.run("sync", "--once")
    assert CONFLICTS not in back.stderr, back.stderr
    assert rows(pg_target_dsn, TABLE) == rows(pg_dsn, TABLE)

    # a genuine edit at the target is still a conflict
    execute(pg_target_dsn, "UPDATE c SET note = 'edited at target' WHERE id = 3")
    execute(pg_dsn, "UPDATE c SET t = '13:00' WHERE id = 3")
    third = cli.run("sync", "--once")
    assert CONFLICTS in third.stderr, third.stderr
    kept = {"local": "11:00:00", "merge": "13:00:00"}[strategy]  # merge: both edits
    assert rows(pg_target_dsn, "SELECT t::text, note FROM c WHERE id = 3") == [
        (kept, "edited at target")
    ]
