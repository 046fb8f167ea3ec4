"""Two-way Mongo ↔ Mongo under load: one writer per database on hot keys (updates, inserts,
deletes) for a minute while the daemon is SIGKILLed five times; once the writers stop, both
databases hold the same documents, conflicts are audited and the engine's applied-change
counters stop growing (no ping-pong)."""

from __future__ import annotations

import json

import pytest
from bson import Int64
from pymongo import MongoClient

from tests.e2e.test_e2e_two_way import audit
from tests.e2e.test_e2e_two_way_kill import hammer, settle
from tests.e2e.test_e2e_two_way_mongo_kill import HOT, MongoHistory, mongo_writer, stopped
from tests.e2e.test_e2e_two_way_mongo_mongo import documents, make_cli


#: It used to end with the sides apart about one run in eight: a direction stalled for 60-100 s,
#: held by a killed run's open transaction (targets/mongo/sessions.py) or by a reader that had
#: lost its cancellation (runtime/cancelling.py); README, *With a Mongo side*.
@pytest.mark.timeout(600)  # a minute of writes, five kills, then settling
@pytest.mark.parametrize("conflicts", ["{strategy: timestamp}", "{prefer: target}"])
def test_two_writers_and_kills_converge_without_ping_pong(tmp_path, throwaway_mongo, conflicts):
    # a server of the test's own: see throwaway_mongo, and the Postgres <-> Mongo kill test
    mongo_uri, src = throwaway_mongo
    tgt = src + "_b"
    with MongoClient(mongo_uri) as client:
        client[src].create_collection("items", changeStreamPreAndPostImages={"enabled": True})
        client[src]["items"].insert_many(
            [{"_id": Int64(i), "name": "n", "qty": 0} for i in range(1, HOT + 1)]
        )
    cli = make_cli(tmp_path, mongo_uri, src, tgt, conflicts)
    cli.run("sync", "--once")  # the forward backfill, then both stream
    writers = [
        lambda stop: mongo_writer(mongo_uri, src, stop, 1),
        lambda stop: mongo_writer(mongo_uri, tgt, stop, 2),
    ]
    with (
        MongoHistory(mongo_uri, src) as source_history,
        MongoHistory(mongo_uri, tgt) as target_history,
    ):
        daemon, port, counts = hammer(cli, writers)
        try:
            assert sum(counts) > 200, counts

            def same() -> bool:
                return documents(mongo_uri, src) == documents(mongo_uri, tgt)

            def explain() -> None:
                a = {d["_id"]: d for d in documents(mongo_uri, src)}
                b = {d["_id"]: d for d in documents(mongo_uri, tgt)}
                keys = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
                raise AssertionError(
                    f"differ: {sorted((k, a.get(k), b.get(k)) for k in keys)}\n"
                    f"versions: {versions(mongo_uri, (src, tgt), keys)}\n"
                    f"source history:\n{source_history.of(keys)}\n"
                    f"target history:\n{target_history.of(keys)}"
                )

            settle(port, same, explain)
            assert audit(cli), "no conflict audited"
        finally:
            stopped(cli, daemon)


def versions(uri: str, databases: tuple[str, ...], keys: set[int]) -> list[dict[str, object]]:
    """The versions each direction recorded for ``keys`` (``_syncengine_versions``), by
    database: what to read with the histories when the sides differ."""
    wanted = {json.dumps({"_id": k}, separators=(",", ":")) for k in keys}
    found = []
    with MongoClient(uri) as client:
        for db in databases:
            for doc in client[db]["_syncengine_versions"].find():
                if wanted & {v for v in doc.values() if isinstance(v, str)}:
                    found.append({"db": db, **doc})
    return found
