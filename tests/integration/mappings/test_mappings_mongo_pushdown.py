"""The Mongo $match from a filter selects the same documents as the Polars filter (real server).

NULLs are stored both ways Mongo has them, as an explicit null and as a missing field, since
SQL's three-valued logic must treat both as NULL.
"""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import HealthCheck, assume, given, settings
from pymongo import MongoClient
from pymongo.collection import Collection
from syncengine.mappings import compile_mapping, to_mongo_match
from syncengine.mappings.pushdown import NotPushable, mongo_match_any, to_mongo_stream_match

from syncengine.codecs.bson_arrow import decode_documents
from syncengine.config.models import MappingConfig
from syncengine.sources.mongo.batches import snapshot_batch
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


def _engine_ids(filter: str, docs: list[dict]) -> list[int]:
    """What the mapping keeps of ``docs`` read by the Mongo snapshot (a missing field is
    unsent, and the mapping keeps a row whose filter reads an unsent field)."""
    batch = snapshot_batch("f", decode_documents(docs), "0", dt.datetime.now(dt.UTC), {})
    mapping = MappingConfig(source="f", filter=filter)
    out = compile_mapping("p", mapping, batch.rows.schema, ("_id",)).apply(batch)
    assert out.dead_letters == []
    return sorted(out.batch.data.column("id").to_pylist())


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(first=predicate(), second=predicate())
def test_pushed_snapshot_match_reads_exactly_what_the_mappings_keep(
    collection: Collection, first: str, second: str
) -> None:
    """The pushed-down match of two mappings over one collection selects the documents that
    either mapping keeps when it reads documents as the snapshot decodes them."""
    try:
        match = mongo_match_any([(first, "postgres"), (second, "postgres")])
    except NotPushable:
        assume(False)
        return
    docs = _documents()
    kept = set(_engine_ids(first, docs)) | set(_engine_ids(second, docs))
    assert _mongo_ids(collection, match) == sorted(kept), (first, second, match)


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
