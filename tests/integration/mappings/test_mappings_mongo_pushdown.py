"""The Mongo $match from a filter selects the same documents as the Polars filter (real server).

NULLs are stored both ways Mongo has them, as an explicit null and as a missing field, since
SQL's three-valued logic must treat both as NULL.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from pymongo import MongoClient
from pymongo.collection import Collection
from syncengine.mappings import to_mongo_match
from syncengine.mappings.pushdown import to_mongo_stream_match

from tests.unit.mappings.mappings_filters import predicate, rows
from tests.unit.mappings.test_mappings_pushdown import polars_ids


def _documents() -> list[dict]:
    rng = random.Random(3)
    docs = []
    for row in rows():
        doc = {"_id": row["id"], **row}
        for name in ("a", "b", "s", "flag"):
            if doc[name] is None and rng.random() < 0.5:
                del doc[name]
        docs.append(doc)
    return docs


@pytest.fixture
def collection(mongo_uri: str, mongo_db: str):
    with MongoClient(mongo_uri) as client:
        coll = client[mongo_db]["f"]
        coll.insert_many(_documents())
        yield coll


def _mongo_ids(coll: Collection, match: dict) -> list[int]:
    return sorted(d["id"] for d in coll.aggregate([{"$match": match}]))


KNOWN = [
    "a <> 1",
    "NOT (a > 2)",
    "a IN (1, 2) OR s = 'ab'",
    "s NOT IN ('ab', 'b')",
    "NOT (s LIKE 'a%')",
    "s ILIKE '%B'",
    "flag IS NOT TRUE",
    "NOT flag",
    "b BETWEEN 0 AND 2.5 AND s IS NOT NULL",
    "NOT (a BETWEEN -1 AND 1)",
    "a IS NULL OR b >= 0.5",
]


@pytest.mark.parametrize("filter", KNOWN)
def test_known_filters_agree(collection: Collection, filter: str) -> None:
    match = to_mongo_match(filter)
    assert match is not None
    assert _mongo_ids(collection, match) == polars_ids(filter, rows())


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(filter=predicate())
def test_mongo_match_and_polars_select_the_same_documents(
    collection: Collection, filter: str
) -> None:
    match = to_mongo_match(filter)
    assume(match is not None)
    assert match is not None
    assert _mongo_ids(collection, match) == polars_ids(filter, rows()), (filter, match)


def test_stream_match_keeps_updates_that_stop_matching(mongo_uri: str, mongo_db: str) -> None:
    with MongoClient(mongo_uri) as client:
        coll = client[mongo_db]["orders"]
        coll.insert_one({"_id": 0, "total": 0})  # the collection exists before watching
        match = to_mongo_stream_match("total >= 1000")
        assert match is not None
        with coll.watch([{"$match": match}], full_document="updateLookup") as stream:
            coll.insert_one({"_id": 1, "total": 5000})
            coll.insert_one({"_id": 2, "total": 10})  # never matched: filtered at the source
            coll.update_one({"_id": 1}, {"$set": {"total": 1}})  # stops matching: must arrive
            seen = []
            while len(seen) < 2:
                event = stream.try_next()
                if event is not None:
                    seen.append((event["operationType"], event["documentKey"]["_id"]))
            coll.insert_one({"_id": 3, "total": 1000})
            while len(seen) < 3:
                event = stream.try_next()
                if event is not None:
                    seen.append((event["operationType"], event["documentKey"]["_id"]))
    assert seen == [("insert", 1), ("update", 1), ("insert", 3)]
