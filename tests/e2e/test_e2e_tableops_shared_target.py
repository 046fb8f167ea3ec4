"""Target tables that several mappings write: another source table merged into one, and one
table split into one by filters. A row some mapping keeps belongs there: before, an update of a
row one sibling kept was deleted by the other, ``resnapshot --table a`` deleted every row ``b``
had written, and ``verify`` showed each mapping's rows as extra to the others'."""

from __future__ import annotations

import itertools
import textwrap

import psycopg

from tests.e2e.harness import CLI, execute, rows, wait_for
from tests.e2e.tableops_support import Loop

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      p:
        source:
          type: postgres
          dsn: ${SRC_DSN}
          tables: [public.a, public.b, public.s]
          snapshot_chunk_rows: 200
        target: {type: postgres, dsn: "${TGT_DSN}"}
        batch: {max_rows: 500, max_wait: 50ms}
        mappings:
          - {source: public.a, target: merged}
          - {source: public.b, target: merged}
          - {source: public.s, target: split, filter: "kind = 'x'"}
          - {source: public.s, target: split, filter: "kind = 'y'"}
    """
)
MERGED = "SELECT id, note FROM {} ORDER BY id"
SPLIT = "SELECT id, kind FROM s WHERE kind IN ('x', 'y') ORDER BY id"


def _seed(dsn: str) -> None:
    execute(
        dsn,
        "CREATE TABLE a (id bigint PRIMARY KEY, note text)",
        "CREATE TABLE b (id bigint PRIMARY KEY, note text)",
        "CREATE TABLE s (id bigint PRIMARY KEY, kind text)",
        "INSERT INTO a SELECT i, 'a' FROM generate_series(1, 1000) i",
        "INSERT INTO b SELECT i, 'b' FROM generate_series(100001, 101000) i",
        "INSERT INTO s SELECT i, (ARRAY['x', 'y', 'z'])[i % 3 + 1] FROM generate_series(1, 300) i",
    )


def _merged(dsn: str) -> list[tuple]:
    return rows(dsn, "SELECT * FROM (" + MERGED.format("a") + ") x") + rows(
        dsn, "SELECT * FROM (" + MERGED.format("b") + ") y"
    )


def test_a_resnapshot_keeps_the_rows_other_mappings_wrote(tmp_path, pg_dsn, pg_target_dsn):
    _seed(pg_dsn)
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    cli.run("sync", "--once")
    # the stream: an update of a row one sibling keeps (before, the other sibling deleted
    # it), rows moving from one sibling's filter to the other's, and out of both
    execute(
        pg_dsn,
        "UPDATE s SET kind = kind WHERE id <= 60",
        "UPDATE s SET kind = 'y' WHERE id = 60",  # x → y
        "UPDATE s SET kind = 'x' WHERE id IN (61, 62)",  # y → x, z → x
        "UPDATE s SET kind = 'z' WHERE id = 63",  # x → z: deleted at the target
    )
    cli.run("sync", "--once")
    assert rows(pg_target_dsn, "SELECT id, kind FROM split ORDER BY id") == rows(pg_dsn, SPLIT)
    # by hand at the target: a key no mapping writes, which the sweeps must delete
    execute(pg_target_dsn, "INSERT INTO merged VALUES (90001, 'ghost')")
    execute(pg_target_dsn, "INSERT INTO split VALUES (90001, 'x')")
    cli.run("resnapshot", "-p", "p", "--table", "public.a")
    assert rows(pg_target_dsn, MERGED.format("merged")) == _merged(pg_dsn)
    cli.run("resnapshot", "-p", "p", "--table", "public.s")
    assert rows(pg_target_dsn, "SELECT id, kind FROM split ORDER BY id") == rows(pg_dsn, SPLIT)
    # verify compares each target table with what all its mappings make (before: per mapping,
    # the other mappings' rows were "extra in target")
    report = cli.run("verify").stdout
    assert "p/merged: source 2000 rows, target 2000: identical" in report, report
    assert "p/split: source 200 rows, target 200: identical" in report, report


def test_rows_the_stream_brings_to_a_shared_target_during_the_sweep_stay(
    tmp_path, pg_dsn, pg_target_dsn
):
    """``b``'s new rows keep arriving through the stream while ``a`` is copied again and swept:
    one applied after the sweep read ``b``'s keys is fenced at its own position, above the
    sweep's, so the sweep's delete of it is dropped."""
    _seed(pg_dsn)
    cli = CLI(tmp_path, CONFIG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    daemon = cli.start("run")
    try:
        wait_for(lambda: rows(pg_target_dsn, "SELECT count(*) FROM merged") == [(2000,)], 120)
        execute(pg_target_dsn, "INSERT INTO merged VALUES (90001, 'ghost')")
        keys = itertools.count(200001)
        conn = psycopg.connect(pg_dsn, autocommit=True)
        inserts = Loop(lambda rng: conn.execute("INSERT INTO b VALUES (%s, 'new')", (next(keys),)))
        inserts.start()
        for _ in range(3):
            cli.run("resnapshot", "-p", "p", "--table", "public.a")
            wait_for(lambda: "done" in [s for (s,) in _statuses(cli)][-1:], 120, 0.1)
        assert inserts.finish() > 100
        conn.close()
        query = MERGED.format("merged")
        wait_for(lambda: rows(pg_target_dsn, query) == _merged(pg_dsn), 120)
    finally:
        if daemon.poll() is None:
            assert cli.stop(daemon) == 0


def _statuses(cli: CLI) -> list[tuple[str]]:
    import sqlite3

    with sqlite3.connect(cli.dir / "state.db") as db:
        return db.execute("SELECT status FROM table_requests ORDER BY id").fetchall()
