"""Postgres timestamps (microseconds) into a Mongo target (BSON dates: milliseconds) under a
strategy that reads the target.

The shadow held the source's microseconds, the document read back its milliseconds: every
change of a row with a timestamp was a conflict nobody made. ``local`` dropped every change
of such rows (``0 change(s) applied``), ``manual`` parked every one. Now the values a Mongo
target cannot hold are floored to milliseconds before detection, as BSON stores them: the
changes apply, a real edit at the target is still a conflict.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap

import pytest
from pymongo import MongoClient

from tests.e2e.harness import CLI, execute

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      stamps:
        source: {type: postgres, dsn: "${SRC_DSN}", tables: [public.items]}
        target: {type: mongo, uri: "${MONGO_URI}", database: "${MONGO_DB}"}
        conflicts: CONFLICTS
    """
)
TABLE = (
    "CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int, stamp timestamptz, "
    "plain timestamp, stamps timestamptz[])"
)
ROWS = (
    "INSERT INTO items SELECT i, 'n' || i, i, "
    "'2026-12-08 10:00:00.123456+00'::timestamptz + i * interval '1.000333 s', "
    "'1969-12-31 23:59:59.999999'::timestamp - i * interval '1 us', "
    "ARRAY['2026-12-08 10:00:00.987654+00'::timestamptz, NULL] FROM generate_series(1, 5) i"
)


@pytest.mark.parametrize(
    "conflicts", ["{strategy: local}", "{strategy: manual}", "{strategy: merge, tie: local}"]
)
def test_changes_of_rows_with_timestamps_are_not_conflicts(
    tmp_path, pg_dsn, mongo_uri, mongo_db, conflicts
):
    execute(pg_dsn, TABLE, ROWS)
    env = {"SRC_DSN": pg_dsn, "MONGO_URI": mongo_uri, "MONGO_DB": mongo_db}
    cli = CLI(tmp_path, CONFIG.replace("CONFLICTS", conflicts), env)
    cli.run("sync", "--once")  # the backfill
    execute(
        pg_dsn,
        "UPDATE items SET qty = -1 WHERE id = 3",
        "UPDATE items SET stamp = stamp + interval '2.5 s' WHERE id = 4",
    )
    result = cli.run("sync", "--once")
    assert "stamps: 2 change(s) applied" in result.stdout, result.stdout + result.stderr
    assert "conflict" not in result.stderr, result.stderr
    with MongoClient(mongo_uri) as client:
        docs = client[mongo_db].items
        assert docs.find_one({"_id": 3})["qty"] == -1
        assert docs.find_one({"_id": 4})["stamp"] == dt.datetime(2026, 12, 8, 10, 0, 6, 624000)
        # a real edit at the target is still one: the source's next change meets it
        docs.update_one({"_id": 2}, {"$set": {"name": "by hand"}})
        execute(pg_dsn, "UPDATE items SET qty = -2 WHERE id = 2")
        result = cli.run("sync", "--once")
        assert "1 conflict(s)" in result.stderr, result.stderr
        assert docs.find_one({"_id": 2})["name"] == "by hand"
    parked = json.loads(cli.run("conflicts", "list", "--json").stdout or "[]")
    assert [c["key"] for c in parked] == ([{"id": 2}] if "manual" in conflicts else [])
