"""Arrays of mixed element types survive Mongo → Mongo and Mongo → Postgres unchanged.

A column whose values have no single Arrow type travels as extended-JSON text marked
``bson_type=json``; the Mongo target rebuilds the value from that mark. These tests check the
mark survives every path a value takes: the snapshot, and change-stream groups of several
batches (so :func:`syncengine.changes.concat_batches` joins parts whose column types differ).
Documents are compared as BSON bytes, so an int32 that came back as int64 or a double, or an
array that came back as a string, fails.
"""

from __future__ import annotations

import textwrap

import bson
from bson import SON, json_util
from bson.codec_options import CodecOptions
from bson.json_util import CANONICAL_JSON_OPTIONS
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

from tests.e2e.harness import CLI, rows

MONGO_TO_MONGO = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      copy:
        source: {type: mongo, uri: "${MONGO_URI}", database: SRC, collections: [things]}
        target: {type: mongo, uri: "${MONGO_URI}", database: TGT}
        batch: {max_rows: 3}
    """
)

MONGO_TO_PG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      copy:
        source: {type: mongo, uri: "${MONGO_URI}", database: SRC, collections: [things]}
        target: {type: postgres, dsn: "${PG_DSN}"}
        batch: {max_rows: 3}
    """
)

RAW = CodecOptions(document_class=RawBSONDocument)
ORDERED = CodecOptions(document_class=SON)

#: values of one field ``v`` with no common Arrow type, and ones that have one
MIXED: list[object] = [
    [1, "a", {"b": 2}],
    [{"x": 1}, [{"y": "s"}, {"y": 2.5}], []],
    [None, 1, None],
    [None, "b", {"c": [1, "d", None]}],
    [[1, 2], ["a"], [{"z": None}]],
    [bson.Int64(7), 1.5, True, "t"],
]
PLAIN: list[object] = [[1, 2, 3], ["a", "b"], [{"b": 1}, {"b": 2}], [None, None], []]


def _raw(collection) -> dict[object, str]:
    """Every document of ``collection`` as canonical extended JSON of its BSON bytes (types
    and field order included, readable in a failure), by ``_id``."""
    raw = collection.with_options(codec_options=RAW)
    found = {}
    for doc in raw.find():
        ordered = bson.decode(doc.raw, codec_options=ORDERED)
        found[ordered["_id"]] = json_util.dumps(ordered, json_options=CANONICAL_JSON_OPTIONS)
    return found


def _load(things, start: int, values: list[object]) -> None:
    """One insert per document: each its own change, so a sync groups several batches."""
    for i, value in enumerate(values):
        things.insert_one({"_id": start + i, "v": value, "n": {"arr": value}})


def test_mixed_arrays_mongo_to_mongo_snapshot_and_stream(tmp_path, mongo_uri, mongo_db):
    source_db, target_db = mongo_db, f"{mongo_db}_t"
    config = MONGO_TO_MONGO.replace("SRC", source_db).replace("TGT", target_db)
    cli = CLI(tmp_path, config, {"MONGO_URI": mongo_uri})
    with MongoClient(mongo_uri) as client:
        things = client[source_db]["things"]
        _load(things, 0, PLAIN + MIXED)  # the snapshot: plain and mixed in one table
        cli.run("sync", "--once")
        assert _raw(client[target_db]["things"]) == _raw(things)
        _load(things, 100, PLAIN + MIXED + PLAIN)  # the stream: groups of several batches
        things.update_one({"_id": 0}, {"$set": {"v": MIXED[0]}})
        things.update_one({"_id": 100 + len(PLAIN)}, {"$set": {"v": PLAIN[0]}})
        things.update_one({"_id": 1}, {"$push": {"v": {"pushed": [None, 1]}}})
        cli.run("sync", "--once")
        assert _raw(client[target_db]["things"]) == _raw(things)
        # one group of batches whose own types differ: ints only, then mixed, then strings
        _load(things, 200, [[1, 2], [3], [4, 5, 6]] + MIXED[:3] + [["x"], ["y"], []])
        cli.run("sync", "--once")
        assert _raw(client[target_db]["things"]) == _raw(things)
        client.drop_database(target_db)


def test_mixed_arrays_mongo_to_postgres_jsonb(tmp_path, mongo_uri, mongo_db, pg_target_dsn):
    config = MONGO_TO_PG.replace("SRC", mongo_db)
    cli = CLI(tmp_path, config, {"MONGO_URI": mongo_uri, "PG_DSN": pg_target_dsn})
    with MongoClient(mongo_uri) as client:
        things = client[mongo_db]["things"]
        _load(things, 0, MIXED)
        cli.run("sync", "--once")
        _load(things, 100, PLAIN + MIXED)
        cli.run("sync", "--once")
        expected = {d["_id"]: _typed(d["v"]) for d in things.find()}
    found = rows(pg_target_dsn, "SELECT _id, v::text, pg_typeof(v)::text FROM things")
    assert {kind for _, _, kind in found} == {"jsonb"}
    # the jsonb holds relaxed extended JSON: read back as BSON, every value and type is kept
    got = {int(k): _typed(json_util.loads(text)) for k, text, _ in found}
    assert got == expected


def _typed(value: object) -> str:
    """``value`` as canonical extended JSON: equal only when values and BSON types are."""
    return json_util.dumps({"v": value}, json_options=CANONICAL_JSON_OPTIONS)
