"""A Postgres source table whose primary key changes while a daemon streams it.

Before: the daemon kept the key it read at its start, while the old-key images after the
change held the new key's columns: an update moving a row left its old row beside the new
one, a delete missed its row, and an insert of a new key overwrote another row holding the
same old key value, all silently (exit 0). Now the stream stops at the change with the
key's before and after and how to go on; the hint's steps end with the target exact.
"""

from __future__ import annotations

import textwrap

from tests.e2e.harness import CLI, execute, rows, wait_for

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      p:
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.a]}
        target: {type: postgres, dsn: "${TGT_DSN}"}
    """
)
ALL = "SELECT id, code, v FROM a ORDER BY code"


def test_a_primary_key_changed_mid_stream_stops_it(tmp_path, pg_dsn, pg_target_dsn):
    execute(
        pg_dsn,
        "CREATE TABLE a (id int PRIMARY KEY, code text NOT NULL UNIQUE, v text)",
        "INSERT INTO a SELECT g, 'c' || g, 'v' FROM generate_series(1, 5) g",
    )
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    cli.run("sync", "--once")
    daemon = cli.start("run")
    try:
        execute(pg_dsn, "UPDATE a SET v = 'streamed' WHERE id = 5")
        wait_for(lambda: rows(pg_target_dsn, ALL) == rows(pg_dsn, ALL))
        execute(
            pg_dsn,
            "ALTER TABLE a DROP CONSTRAINT a_pkey",
            "ALTER TABLE a ADD PRIMARY KEY (code)",
            "UPDATE a SET v = 'u' WHERE code = 'c1'",
            "UPDATE a SET id = 20 WHERE code = 'c2'",
            "DELETE FROM a WHERE code = 'c3'",
            "INSERT INTO a VALUES (4, 'c44', 'same id')",
        )
        assert daemon.wait(60) == 1
    finally:
        if daemon.poll() is None:
            cli.stop(daemon)
    logs = cli.daemon_logs()
    assert "the key of public.a changed at the source, from (id) to (code)" in logs
    assert "Traceback" not in logs
    # nothing of the new key's changes was applied by the old key
    assert rows(pg_target_dsn, "SELECT count(*), count(DISTINCT id) FROM a") == [(5, 5)]
    assert rows(pg_target_dsn, "SELECT v FROM a WHERE id = 4") == [("v",)]
    # the hint: the target gets the new key, then a restart and a resnapshot
    execute(
        pg_target_dsn,
        "ALTER TABLE a DROP CONSTRAINT a_pkey",
        "ALTER TABLE a ADD PRIMARY KEY (code)",
    )
    cli.run("sync", "--once")
    cli.run("resnapshot", "-p", "p", "--table", "public.a")
    assert rows(pg_target_dsn, ALL) == rows(pg_dsn, ALL)
    execute(
        pg_dsn, "DELETE FROM a WHERE code = 'c4'", "UPDATE a SET v = 'later' WHERE code = 'c44'"
    )
    cli.run("sync", "--once")
    assert rows(pg_target_dsn, ALL) == rows(pg_dsn, ALL)
