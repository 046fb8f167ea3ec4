"""A Mongo field whose type differs from document to document, synced into Postgres.

A field whose types conflict within a batch is carried as extended JSON into a ``jsonb``
column; a batch whose documents agree carries it typed. These tests sync batches of both
kinds in either order and compare every row with its document (count included: a key that
stopped matching its row leaves a second row, or a deleted one behind):

* typed values into a ``jsonb`` column: the string ``_id`` ``"4"`` used to be parsed as the
  number 4 and overwrite the row of the document whose ``_id`` is 4, ``"abc"`` stopped the
  sync, an ObjectId's hex was refused;
* a strategy that reads the target's rows (``local``, ``merge``) sent the typed key to the
  ``jsonb`` column and stopped;
* ``verify`` compared typed scan batches with the JSON the column holds (every such row
  "missing" and "extra");
* JSON-carried values into a typed column: a ``text`` key was written in quotes (``'"a"'``),
  so an update added a second row and a delete missed its row; an integer column refused
  the strings. The column now becomes ``jsonb``, its values their extended JSON.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from bson import Int64, ObjectId
from pymongo import MongoClient

from syncengine.codecs.bson_arrow import to_json
from tests.e2e.harness import CLI, rows

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      copy:
        source: {type: mongo, uri: "${MONGO_URI}", database: SRC, collections: [things]}
        target: {type: postgres, dsn: "${PG_DSN}"}
    """
)


def _cli(tmp_path, mongo_uri, mongo_db, pg_target_dsn) -> CLI:
    env = {"MONGO_URI": mongo_uri, "PG_DSN": pg_target_dsn}
    return CLI(tmp_path, CONFIG.replace("SRC", mongo_db), env)


def _json(value: object) -> str:
    """``value`` as comparable JSON (key order and number forms as Python reads them)."""
    return json.dumps(value, sort_keys=True)


def _same(things, dsn: str) -> None:
    """Every document is one row whose columns hold its fields' extended JSON, and no row
    is left over."""
    expected = {
        _json(json.loads(to_json(d["_id"]))): {
            k: _json(json.loads(to_json(v))) for k, v in d.items() if k != "_id"
        }
        for d in things.find()
    }
    found = rows(
        dsn, "SELECT to_jsonb(_id)::text, to_jsonb(v)::text, to_jsonb(n)::text FROM things"
    )
    assert len(found) == len(expected), found
    got = {
        _json(json.loads(key)): {
            name: _json(json.loads(text)) for name, text in (("v", v), ("n", n)) if text is not None
        }
        for key, v, n in found
    }
    assert got == expected


def _types(dsn: str) -> dict[str, str]:
    return dict(
        rows(
            dsn,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'things' AND column_name IN ('_id', 'v', 'n')",
        )
    )


def test_typed_batches_into_json_columns(tmp_path, mongo_uri, mongo_db, pg_target_dsn):
    cli = _cli(tmp_path, mongo_uri, mongo_db, pg_target_dsn)
    oid = ObjectId()
    with MongoClient(mongo_uri) as client:
        things = client[mongo_db]["things"]
        # one batch holding every type: jsonb columns
        things.insert_many(
            [
                {"_id": 4, "v": 1, "n": 1},
                {"_id": "x", "v": "s", "n": 2},
                {"_id": oid, "v": True, "n": 3},
                {"_id": Int64(5), "v": 2.5, "n": 4},
            ]
        )
        cli.run("sync", "--once")
        assert _types(pg_target_dsn) == {"_id": "jsonb", "v": "jsonb", "n": "integer"}
        _same(things, pg_target_dsn)
        # batches of one type each: a string that reads as a number, one that is no JSON
        things.insert_one({"_id": "4", "v": "four", "n": 5})
        cli.run("sync", "--once")
        things.insert_one({"_id": "abc", "v": 'text with "quotes" and \\ \t', "n": 6})
        cli.run("sync", "--once")
        _same(things, pg_target_dsn)
        # typed updates and deletes find the rows the mixed batch wrote
        things.update_one({"_id": oid}, {"$set": {"n": 30}})
        cli.run("sync", "--once")
        things.update_one({"_id": Int64(5)}, {"$set": {"n": 40}})
        cli.run("sync", "--once")
        things.update_one({"_id": 4}, {"$set": {"n": 10}})
        cli.run("sync", "--once")
        things.delete_one({"_id": "x"})
        cli.run("sync", "--once")
        _same(things, pg_target_dsn)
        assert things.count_documents({}) == 5
        assert "identical" in cli.run("verify").stdout  # typed scan batches compared as JSON


def test_json_batch_into_typed_columns(tmp_path, mongo_uri, mongo_db, pg_target_dsn):
    cli = _cli(tmp_path, mongo_uri, mongo_db, pg_target_dsn)
    with MongoClient(mongo_uri) as client:
        things = client[mongo_db]["things"]
        things.insert_many([{"_id": "a", "v": "x", "n": 1}, {"_id": "b", "v": "y", "n": 2}])
        cli.run("sync", "--once")
        assert _types(pg_target_dsn) == {"_id": "text", "v": "text", "n": "integer"}
        # one group whose documents disagree: an int key, a string count
        things.insert_one({"_id": 7, "v": 1, "n": "two"})
        things.update_one({"_id": "a"}, {"$set": {"v": "x2"}})
        things.delete_one({"_id": "b"})
        cli.run("sync", "--once")
        assert _types(pg_target_dsn) == {"_id": "jsonb", "v": "jsonb", "n": "jsonb"}
        _same(things, pg_target_dsn)
        things.update_one({"_id": "a"}, {"$set": {"n": 3}})  # a typed batch again
        cli.run("sync", "--once")
        _same(things, pg_target_dsn)
        assert cli.run("deadletters", "list").stdout.strip() == ""


def test_object_id_and_long_keys_become_json(tmp_path, mongo_uri, mongo_db, pg_target_dsn):
    """The values a typed column holds become the JSON later batches write for them: an
    ObjectId's hex in a ``text`` column ``{"$oid": …}``, a small long in a ``bigint`` column
    ``{"$numberLong": …}``; else a typed update of a document no longer finds its row."""
    cli = _cli(tmp_path, mongo_uri, mongo_db, pg_target_dsn)
    ids = [ObjectId() for _ in range(3)]
    with MongoClient(mongo_uri) as client:
        things = client[mongo_db]["things"]
        things.insert_many([{"_id": i, "v": "o", "n": Int64(n)} for n, i in enumerate(ids)])
        cli.run("sync", "--once")
        assert _types(pg_target_dsn) == {"_id": "text", "v": "text", "n": "bigint"}
        things.insert_one({"_id": "custom", "v": "c", "n": "many"})
        things.update_one({"_id": ids[0]}, {"$set": {"v": "changed"}})
        cli.run("sync", "--once")
        assert _types(pg_target_dsn) == {"_id": "jsonb", "v": "text", "n": "jsonb"}
        _same(things, pg_target_dsn)
        things.update_one({"_id": ids[1]}, {"$set": {"n": Int64(11)}})  # typed again
        things.delete_one({"_id": ids[2]})
        cli.run("sync", "--once")
        _same(things, pg_target_dsn)
        assert things.count_documents({}) == 3


@pytest.mark.parametrize("strategy", ["local", "merge"])
def test_strategies_that_read_the_target(tmp_path, mongo_uri, mongo_db, pg_target_dsn, strategy):
    """A strategy that reads the target's rows by key: a typed batch's string key sent to the
    ``jsonb`` key column was refused, and the sync stopped there."""
    config = CONFIG.replace("SRC", mongo_db) + f"    conflicts: {{strategy: {strategy}}}\n"
    cli = CLI(tmp_path, config, {"MONGO_URI": mongo_uri, "PG_DSN": pg_target_dsn})
    oid = ObjectId()
    with MongoClient(mongo_uri) as client:
        things = client[mongo_db]["things"]
        things.insert_many(
            [{"_id": 4, "v": 1, "n": 1}, {"_id": "x", "v": "s", "n": 2}, {"_id": oid, "v": True}]
        )
        cli.run("sync", "--once")
        things.update_one({"_id": "x"}, {"$set": {"v": "t"}})
        cli.run("sync", "--once")
        things.update_one({"_id": "x"}, {"$set": {"v": "u"}})
        things.update_one({"_id": oid}, {"$set": {"v": False}})
        cli.run("sync", "--once")
        _same(things, pg_target_dsn)
        assert cli.run("conflicts", "list").stdout.strip() == "no conflicts"


def test_backfill_of_int_then_string_keys(tmp_path, mongo_uri, mongo_db, pg_target_dsn):
    """Batches of three documents: the first ones' ``_id``s ints (an integer column), the
    later ones' strings, typed. The backfill stopped at the first string for good
    ("invalid input syntax for type integer"), run after run."""
    config = CONFIG.replace("SRC", mongo_db) + "    batch: {max_rows: 3}\n"
    cli = CLI(tmp_path, config, {"MONGO_URI": mongo_uri, "PG_DSN": pg_target_dsn})
    with MongoClient(mongo_uri) as client:
        things = client[mongo_db]["things"]
        ints = [{"_id": i, "v": i, "n": 1} for i in range(6)]
        things.insert_many(ints + [{"_id": f"s{i}", "v": f"t{i}", "n": 2} for i in range(6)])
        cli.run("sync", "--once")
        assert _types(pg_target_dsn) == {"_id": "jsonb", "v": "jsonb", "n": "integer"}
        _same(things, pg_target_dsn)
        things.insert_many([{"_id": f"q{i}", "v": True, "n": 3} for i in range(3)])
        things.update_one({"_id": 2}, {"$set": {"v": 20}})
        cli.run("sync", "--once")
        _same(things, pg_target_dsn)
        assert cli.run("deadletters", "list").stdout.strip() == ""
        # verify scans the source in typed batches too: compared as the JSON the target holds
        assert "identical" in cli.run("verify").stdout


def test_a_column_made_json_under_local(tmp_path, mongo_uri, mongo_db, pg_target_dsn):
    """``local`` compares the target's rows with the shadow's hashes: once the columns became
    ``jsonb``, the shadow rows made of the typed values no longer matched, so every older
    row read as changed at the target and kept the source's updates out, for good. The
    shadow is rebuilt from the target's rows instead (as after a strategy switch)."""
    config = CONFIG.replace("SRC", mongo_db) + "    conflicts: {strategy: local}\n"
    cli = CLI(tmp_path, config, {"MONGO_URI": mongo_uri, "PG_DSN": pg_target_dsn})
    with MongoClient(mongo_uri) as client:
        things = client[mongo_db]["things"]
        things.insert_many([{"_id": "a", "v": "x", "n": 1}, {"_id": "b", "v": "y", "n": 2}])
        cli.run("sync", "--once")
        things.insert_one({"_id": 7, "v": 1, "n": "two"})
        cli.run("sync", "--once")
        assert _types(pg_target_dsn) == {"_id": "jsonb", "v": "jsonb", "n": "jsonb"}
        things.update_one({"_id": "a"}, {"$set": {"v": "x2"}})
        things.update_one({"_id": "b"}, {"$set": {"n": 5}})
        cli.run("sync", "--once")
        _same(things, pg_target_dsn)
        things.update_one({"_id": "a"}, {"$set": {"v": "x3"}})
        cli.run("sync", "--once")
        _same(things, pg_target_dsn)


@pytest.mark.parametrize("max_rows", [3, 100])
def test_resnapshot_keeps_the_rows_of_json_keys(
    tmp_path, mongo_uri, mongo_db, pg_target_dsn, max_rows
):
    """A re-snapshot's sweep compares the source's keys with the target's as text. The typed
    keys of a scan batch (``max_rows: 3``) were not the JSON the column holds, so every row
    whose key was a string or an ObjectId read as gone at the source and was deleted (7 of
    13); in a scan batch holding both types (100) the extended JSON of ``"é0"`` is
    ``"\\u00e90"``, which the column prints as ``"é0"``: those rows were deleted too."""
    config = CONFIG.replace("SRC", mongo_db) + f"    batch: {{max_rows: {max_rows}}}\n"
    cli = CLI(tmp_path, config, {"MONGO_URI": mongo_uri, "PG_DSN": pg_target_dsn})
    with MongoClient(mongo_uri) as client:
        things = client[mongo_db]["things"]
        ints = [{"_id": i, "v": i, "n": 1} for i in range(6)]
        strings = [{"_id": f"é{i}", "v": f"t{i}", "n": 2} for i in range(6)]
        things.insert_many([*ints, *strings, {"_id": ObjectId(), "v": Int64(3), "n": 3}])
        cli.run("sync", "--once")
        assert _types(pg_target_dsn)["_id"] == "jsonb"
        things.delete_one({"_id": "é5"})  # gone at the source: the sweep's to delete
        cli.run("resnapshot", "-p", "copy", "--table", "things")
        _same(things, pg_target_dsn)
        assert "identical" in cli.run("verify").stdout


def test_document_keys(tmp_path, mongo_uri, mongo_db, pg_target_dsn):
    """A collection whose ``_id``s are documents (a ``$group`` or ``$merge`` output): the
    backfill stopped with a traceback (a struct key cannot be a key parameter); its keys are
    now the text their ``jsonb`` prints, through stream, re-snapshot sweep and verify."""
    cli = _cli(tmp_path, mongo_uri, mongo_db, pg_target_dsn)
    with MongoClient(mongo_uri) as client:
        things = client[mongo_db]["things"]
        things.insert_many([{"_id": {"region": "eu", "id": i}, "v": i, "n": 0} for i in range(6)])
        cli.run("sync", "--once")
        assert _types(pg_target_dsn)["_id"] == "jsonb"
        things.update_one({"_id": {"region": "eu", "id": 1}}, {"$set": {"v": 100}})
        things.delete_one({"_id": {"region": "eu", "id": 2}})
        cli.run("sync", "--once")
        _same(things, pg_target_dsn)
        things.delete_one({"_id": {"region": "eu", "id": 3}})
        cli.run("resnapshot", "-p", "copy", "--table", "things")
        _same(things, pg_target_dsn)
        assert "identical" in cli.run("verify").stdout


def test_an_array_whose_items_change_type(tmp_path, mongo_uri, mongo_db, pg_target_dsn):
    """Arrays of ints made an ``integer[]`` column; arrays of strings later went to the dead
    letters row by row. The column becomes ``jsonb``, the arrays it holds JSON arrays."""
    cli = _cli(tmp_path, mongo_uri, mongo_db, pg_target_dsn)
    with MongoClient(mongo_uri) as client:
        things = client[mongo_db]["things"]
        things.insert_many([{"_id": i, "v": [i, i + 1], "n": 1} for i in range(3)])
        cli.run("sync", "--once")
        things.insert_many([{"_id": 10 + i, "v": ["x", "é"], "n": 2} for i in range(3)])
        cli.run("sync", "--once")  # a group of string arrays only: typed
        assert _types(pg_target_dsn)["v"] == "jsonb"
        _same(things, pg_target_dsn)
        things.update_one({"_id": 1}, {"$set": {"v": [7]}})
        cli.run("sync", "--once")
        _same(things, pg_target_dsn)
        assert cli.run("deadletters", "list").stdout.strip() == ""
