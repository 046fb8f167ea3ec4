"""Mongo → Mongo one-way sync of documents with varying shapes raises no false conflicts."""

from __future__ import annotations

import json
import textwrap

from pymongo import MongoClient

from tests.e2e.harness import CLI

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      copy:
        source: {type: mongo, uri: "${MONGO_URI}", database: SRC, collections: [things]}
        target: {type: mongo, uri: "${MONGO_URI}", database: TGT}
        conflicts: {strategy: manual}
    """
)


def test_varying_document_shapes_do_not_park(tmp_path, mongo_uri, mongo_db):
    source_db, target_db = f"{mongo_db}", f"{mongo_db}_t"
    config = CONFIG.replace("SRC", source_db).replace("TGT", target_db)
    cli = CLI(tmp_path, config, {"MONGO_URI": mongo_uri})
    with MongoClient(mongo_uri) as client:
        things = client[source_db]["things"]
        things.insert_many([{"_id": i, "a": i} for i in range(20)])
        things.insert_many([{"_id": 100 + i, "b": {"c": str(i)}} for i in range(20)])
        cli.run("sync", "--once")
        things.update_many({"_id": {"$lt": 10}}, {"$set": {"z": True}})
        things.update_one({"_id": 105}, {"$set": {"b.c": "changed"}})
        things.insert_one({"_id": 999, "only": [1, 2]})
        cli.run("sync", "--once")
        parked = json.loads(cli.run("conflicts", "list", "--json").stdout)
        assert parked == []
        copy = {d["_id"]: d for d in client[target_db]["things"].find()}
        assert copy == {d["_id"]: d for d in things.find()}
        client.drop_database(target_db)
