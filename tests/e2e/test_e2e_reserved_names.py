"""A source column named like one of the engine's own batch columns (``_op``, ``_pos``,
``_ts``, ``_txid``, ``_before.*``, ``_unsent.*``): a table with a ``_ts`` column, or a
collection whose documents have a ``_ts`` field, stopped every sync with a traceback (a
duplicate field, or a timestamp cast to the document's int). It cannot be synced as it is
(the names are the batch's own); ``validate`` and ``sync`` now say which columns, and how
to go on, and exit without a traceback."""

from __future__ import annotations

import textwrap

from pymongo import MongoClient

from tests.e2e.harness import CLI, execute, rows

PG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      p:
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.m, public.ok]}
        target: {type: postgres, dsn: "${TGT_DSN}"}
    """
)
MONGO = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      copy:
        source: {type: mongo, uri: "${MONGO_URI}", database: SRC, collections: [things]}
        target: {type: postgres, dsn: "${PG_DSN}"}
    """
)


def test_postgres_table_with_reserved_column_names(tmp_path, pg_dsn, pg_target_dsn):
    execute(
        pg_dsn,
        'CREATE TABLE m (id int PRIMARY KEY, _op text, _ts bigint, "_before.x" int, note text)',
        "CREATE TABLE ok (id int PRIMARY KEY)",
        "INSERT INTO m VALUES (1, 'delete', 5, 7, 'a')",
    )
    cli = CLI(tmp_path, PG, {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn})
    for command in (("validate",), ("sync", "--once")):
        result = cli.run(*command, check=False)
        assert result.returncode != 0
        out = result.stdout + result.stderr
        assert "Traceback" not in out
        assert "'public.m': column(s) _op, _ts, _before.x have names the engine keeps" in out
        assert "RENAME COLUMN" in out
    execute(pg_dsn, "ALTER TABLE m RENAME COLUMN _op TO op", "ALTER TABLE m RENAME _ts TO ts")
    execute(pg_dsn, 'ALTER TABLE m RENAME COLUMN "_before.x" TO before_x')
    cli.run("sync", "--once")
    assert rows(pg_target_dsn, "SELECT id, op, ts, before_x, note FROM m") == [
        (1, "delete", 5, 7, "a")
    ]


def test_mongo_documents_with_a_reserved_field(tmp_path, mongo_uri, mongo_db, pg_target_dsn):
    env = {"MONGO_URI": mongo_uri, "PG_DSN": pg_target_dsn}
    cli = CLI(tmp_path, MONGO.replace("SRC", mongo_db), env)
    with MongoClient(mongo_uri) as client:
        things = client[mongo_db]["things"]
        things.insert_many([{"_id": 1, "_ts": 1700000000}, {"_id": 2, "v": 1}])
        result = cli.run("sync", "--once", check=False)
        assert result.returncode != 0
        out = result.stdout + result.stderr
        assert "Traceback" not in out
        assert "things: column(s) _ts have names the engine keeps" in out
        things.update_many({}, {"$rename": {"_ts": "ts"}})
        cli.run("sync", "--once")
    assert rows(pg_target_dsn, "SELECT _id, ts, v FROM things ORDER BY 1") == [
        (1, 1700000000, None),
        (2, None, 1),
    ]
