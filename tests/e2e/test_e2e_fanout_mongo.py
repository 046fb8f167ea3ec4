"""Fan-out from a Mongo source (ObjectIds, nested documents, partial updates) through one real
nats-server to a Mongo target and a Parquet log, every pipeline in one ``sync --once``: the
documents survive the Arrow IPC round trip through the stream with their BSON types, and a
second run applies only what changed."""

from __future__ import annotations

import textwrap

import pytest
from bson import ObjectId
from pymongo import MongoClient

from tests.e2e.harness import CLI

pytest.importorskip(
    "nats", reason="the cluster extra is not installed (pip install -e '.[cluster]')"
)


def config(server: str, lake: str) -> str:
    return textwrap.dedent(
        f"""
        state: ${{SYNCENGINE_STATE}}
        pipelines:
          docs:
            source: {{type: mongo, uri: "${{MONGO_URI}}", database: SRC, collections: [things]}}
            target: {{type: mongo, uri: "${{MONGO_URI}}", database: TGT}}
            fanout:
              engine: nats
              servers: ["{server}"]
              stream: fanout_docs
              partitions: 4
              targets:
                lake: {{type: parquet, path: "{lake}"}}
        """
    )


def test_mongo_documents_fan_out_to_mongo_and_parquet(tmp_path, nats_node, mongo_uri, mongo_db):
    from syncengine.targets.parquet import read_log

    source_db, target_db = mongo_db, f"{mongo_db}_t"
    lake = str(tmp_path / "lake")
    text = config(nats_node.urls[0], lake).replace("SRC", source_db).replace("TGT", target_db)
    cli = CLI(tmp_path, text, {"MONGO_URI": mongo_uri})
    ids = [ObjectId() for _ in range(30)]
    with MongoClient(mongo_uri) as client:
        things = client[source_db]["things"]
        try:
            things.insert_many(
                [{"_id": i, "n": k, "nested": {"tags": ["a", str(k)]}} for k, i in enumerate(ids)]
            )
            cli.run("sync", "--once")
            copy = client[target_db]["things"]
            assert {d["_id"]: d for d in copy.find()} == {d["_id"]: d for d in things.find()}

            things.update_many({"n": {"$lt": 10}}, {"$inc": {"n": 100}})
            things.update_one({"_id": ids[20]}, {"$set": {"nested.tags": ["changed"]}})
            things.delete_one({"_id": ids[29]})
            cli.run("sync", "--once")
            assert {d["_id"]: d for d in copy.find()} == {d["_id"]: d for d in things.find()}

            log = read_log(lake, "things")
            ops = log.column("_op").to_pylist()
            assert ops.count("r") == 30  # the snapshot once, through the stream
            assert ops.count("d") == 1
            changed = [
                p for p, op in zip(log.column("_pos").to_pylist(), ops, strict=True) if op == "u"
            ]
            assert len(changed) == len(set(changed)) == 11  # no change twice
        finally:
            client.drop_database(target_db)
