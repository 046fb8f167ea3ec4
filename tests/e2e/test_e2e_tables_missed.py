"""Tables whose changes the stream never saw (:mod:`syncengine.runtime.captured`).

Before: a table added to ``tables:`` while nothing ran (the config edited, then ``sync --once``
or a restarted daemon) was never copied (its target table was not even made: its rows before
the edit, and its changes until it joined the publication, were lost, exit 0); a Postgres table
dropped and created again, or renamed away and replaced, lost every change of the new table
until the next start re-published it, and kept the old table's rows at the target for good.
"""

from __future__ import annotations

import sqlite3
import textwrap

import pytest
from pymongo import MongoClient

from tests.e2e.harness import CLI, execute, rows, wait_for

PG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      p:
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.a]}
        target: {type: postgres, dsn: "${TGT_DSN}"}
    """
)
BOTH = PG.replace("[public.a]", "[public.a, public.b]")
MONGO = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      copy:
        source: {type: mongo, uri: "${MONGO_URI}", database: SRC, collections: [a]}
        target: {type: postgres, dsn: "${PG_DSN}"}
    """
)


def _pg(tmp_path, pg_dsn, pg_target_dsn, config: str = PG) -> CLI:
    execute(
        pg_dsn,
        "CREATE TABLE a (id int PRIMARY KEY, v text)",
        "CREATE TABLE b (id int PRIMARY KEY, v text)",
        "INSERT INTO a SELECT g, 'a' || g FROM generate_series(1, 5) g",
        "INSERT INTO b SELECT g, 'b' || g FROM generate_series(1, 300) g",
    )
    cli = CLI(tmp_path, config, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    cli.run("sync", "--once")
    return cli


def _same(pg_dsn: str, pg_target_dsn: str, table: str) -> bool:
    query = f"SELECT id, v FROM {table} ORDER BY id"
    return rows(pg_target_dsn, query) == rows(pg_dsn, query)


def test_a_table_added_while_nothing_ran_is_copied(tmp_path, pg_dsn, pg_target_dsn):
    cli = _pg(tmp_path, pg_dsn, pg_target_dsn)
    execute(pg_dsn, "UPDATE b SET v = 'changed' WHERE id <= 10", "DELETE FROM b WHERE id > 290")
    cli.config.write_text(BOTH)
    result = cli.run("sync", "--once")
    assert "public.b joined the pipeline's tables while it was not running" in result.stderr
    assert rows(pg_target_dsn, "SELECT count(*) FROM b") == [(290,)]
    assert _same(pg_dsn, pg_target_dsn, "b")
    execute(pg_dsn, "INSERT INTO b VALUES (1000, 'later')", "DELETE FROM b WHERE id = 1")
    again = cli.run("sync", "--once")
    assert "joined" not in again.stderr  # noted: asked for once
    assert _same(pg_dsn, pg_target_dsn, "b") and _same(pg_dsn, pg_target_dsn, "a")


def test_a_table_added_while_nothing_ran_survives_a_kill(tmp_path, pg_dsn, pg_target_dsn):
    """Killed after the copy was asked for and before the tables were noted, then in the
    copy's first commit: each rerun carries the one request on, and the rows end exact."""
    cli = _pg(tmp_path, pg_dsn, pg_target_dsn)
    cli.config.write_text(BOTH)
    for fault in ("captured.before_note:kill", "postgres.before_commit:kill"):
        cli.env["SYNCENGINE_FAULT"] = fault
        assert cli.run("sync", "--once", check=False).returncode == -9
    del cli.env["SYNCENGINE_FAULT"]
    cli.run("sync", "--once")
    assert rows(pg_target_dsn, "SELECT count(*), count(DISTINCT id) FROM b") == [(300, 300)]
    assert _same(pg_dsn, pg_target_dsn, "b")
    with sqlite3.connect(tmp_path / "state.db") as state:  # asked again after the kill: once
        assert state.execute("SELECT source_table, status FROM table_requests").fetchall() == [
            ("public.b", "done")
        ]


def test_a_table_dropped_and_created_again(tmp_path, pg_dsn, pg_target_dsn):
    cli = _pg(tmp_path, pg_dsn, pg_target_dsn, BOTH)
    execute(
        pg_dsn,
        "INSERT INTO a VALUES (6, 'old')",  # a change of the old table, after the checkpoint
        "DROP TABLE a",
        "CREATE TABLE a (id int PRIMARY KEY, v text)",
        "INSERT INTO a VALUES (10, 'new'), (3, 'new three')",
        "INSERT INTO b VALUES (1000, 'b')",
    )
    result = cli.run("sync", "--once")
    assert "public.a is another table than the one captured" in result.stderr
    assert rows(pg_target_dsn, "SELECT id, v FROM a ORDER BY id") == [(3, "new three"), (10, "new")]
    execute(pg_dsn, "INSERT INTO a VALUES (11, 'streamed')", "UPDATE a SET v = 'u' WHERE id = 3")
    cli.run("sync", "--once")
    assert _same(pg_dsn, pg_target_dsn, "a") and _same(pg_dsn, pg_target_dsn, "b")


def test_a_table_renamed_away_and_replaced(tmp_path, pg_dsn, pg_target_dsn):
    cli = _pg(tmp_path, pg_dsn, pg_target_dsn)
    execute(
        pg_dsn,
        "ALTER TABLE a RENAME TO a_old",
        "INSERT INTO a_old VALUES (7, 'old')",
        "CREATE TABLE a (id int PRIMARY KEY, v text)",
        "INSERT INTO a SELECT id, v || '!' FROM a_old WHERE id > 2",  # a rebuilding migration
    )
    cli.run("sync", "--once")
    assert _same(pg_dsn, pg_target_dsn, "a")
    assert rows(pg_target_dsn, "SELECT id FROM a ORDER BY id") == [(3,), (4,), (5,), (7,)]


def test_the_daemon_copies_a_table_replaced_while_it_streams(tmp_path, pg_dsn, pg_target_dsn):
    cli = _pg(tmp_path, pg_dsn, pg_target_dsn, BOTH)
    daemon = cli.start("run")
    try:
        execute(pg_dsn, "INSERT INTO a VALUES (6, 'streamed')")
        wait_for(lambda: _same(pg_dsn, pg_target_dsn, "a"))
        execute(
            pg_dsn,
            "BEGIN",
            "DROP TABLE a",
            "CREATE TABLE a (id int PRIMARY KEY, v text)",
            "INSERT INTO a VALUES (20, 'rebuilt'), (2, 'two')",
            "COMMIT",
            "INSERT INTO a VALUES (21, 'after')",
            "INSERT INTO b VALUES (1000, 'b')",
        )
        wait_for(lambda: _same(pg_dsn, pg_target_dsn, "a"), timeout=60)
        execute(pg_dsn, "INSERT INTO a VALUES (22, 'streamed again')")
        wait_for(lambda: _same(pg_dsn, pg_target_dsn, "a"))
        assert _same(pg_dsn, pg_target_dsn, "b")
    finally:
        cli.stop(daemon)
    assert "public.a replaced at the source while streaming" in cli.daemon_logs()


def test_a_collection_added_while_nothing_ran_is_copied(
    tmp_path, mongo_uri, mongo_db, pg_target_dsn
):
    config = MONGO.replace("SRC", mongo_db)
    cli = CLI(tmp_path, config, {"MONGO_URI": mongo_uri, "PG_DSN": pg_target_dsn})
    with MongoClient(mongo_uri) as client:
        db = client[mongo_db]
        db["a"].insert_many([{"_id": i, "v": i} for i in range(3)])
        db["b"].insert_many([{"_id": i, "w": i} for i in range(50)])
        cli.run("sync", "--once")
        db["b"].delete_one({"_id": 0})
        cli.config.write_text(config.replace("collections: [a]", "collections: [a, b]"))
        result = cli.run("sync", "--once")
        assert "b joined the pipeline's tables while it was not running" in result.stderr
        assert rows(pg_target_dsn, "SELECT count(*), min(_id), max(w) FROM b") == [(49, 1, 49)]
        db["b"].insert_one({"_id": 100, "w": 100})
        cli.run("sync", "--once")
    assert rows(pg_target_dsn, "SELECT count(*) FROM b") == [(50,)]


RENAMED = MONGO.replace("collections: [a]", "collections: [a, reports]")


@pytest.mark.parametrize("how", ["sync", "daemon"])
def test_a_collection_renamed_over_a_synced_one_is_copied(
    tmp_path, mongo_uri, mongo_db, pg_target_dsn, how
):
    """``$out`` on MongoDB replaces its output collection by renaming a temporary one over it
    (``dropTarget``): the new documents are in no change event. Before, the target kept the
    old documents (or, where the server also sent the drop, none) and an error was logged."""
    cli = CLI(
        tmp_path,
        RENAMED.replace("SRC", mongo_db),
        {"MONGO_URI": mongo_uri, "PG_DSN": pg_target_dsn},
    )
    query = "SELECT _id, n FROM reports ORDER BY _id"
    with MongoClient(mongo_uri) as client:
        db = client[mongo_db]
        db["a"].insert_one({"_id": 1})
        db["reports"].insert_many([{"_id": 0, "n": 100}, {"_id": 7, "n": 7}])
        cli.run("sync", "--once")
        daemon = cli.start("run") if how == "daemon" else None
        try:
            db["tmp_out"].insert_many([{"_id": i, "n": i * 10} for i in range(1, 4)])
            db["tmp_out"].rename("reports", dropTarget=True)
            db["a"].insert_one({"_id": 2})
            wanted = [(i, i * 10) for i in range(1, 4)]
            if daemon is None:
                result = cli.run("sync", "--once")
                assert "renamed to reports, replacing it: reports is copied again" in result.stderr
                assert rows(pg_target_dsn, query) == wanted
            else:
                wait_for(lambda: rows(pg_target_dsn, query) == wanted, timeout=60)
            db["reports"].insert_one({"_id": 9, "n": 90})
            if daemon is None:
                cli.run("sync", "--once")
            else:
                wait_for(lambda: len(rows(pg_target_dsn, query)) == 4)
        finally:
            if daemon is not None:
                cli.stop(daemon)
    assert rows(pg_target_dsn, query) == [*wanted, (9, 90)]
    assert rows(pg_target_dsn, "SELECT _id FROM a ORDER BY _id") == [(1,), (2,)]
