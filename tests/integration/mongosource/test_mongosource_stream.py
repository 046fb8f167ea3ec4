"""Change stream → ChangeBatches against the fixture's Mongo server."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import uuid
from decimal import Decimal

import bson
import pytest
from bson import Binary, Decimal128, Int64, ObjectId
from pymongo import MongoClient

from syncengine.config.models import BatchConfig
from syncengine.errors import HistoryLost
from tests.integration.mongosource.mongosource_helpers import (
    canonical,
    drain,
    expired_like,
    make_source,
    replay,
    rows_of,
    stripped,
)

UTC = dt.UTC


def every_type(i: int) -> dict:
    return {
        "_id": ObjectId(),
        "s": f"name {i}",
        "i32": i,
        "i64": Int64(2**40 + i),
        "dbl": i / 4,
        "dec": Decimal128(f"{i}.10"),
        "flag": i % 2 == 0,
        "at": dt.datetime(2024, 5, 1, 12, 0, i, 123000, tzinfo=UTC),
        "raw": b"\x00\xffbytes",
        "uid": Binary.from_uuid(uuid.UUID(int=i + 1)),
        "nothing": None,
        "sub": {"x": i, "deep": {"y": "z"}},
        "tags": ["a", "b"],
    }


async def _changes(source, start, client_db):
    until = await source.current_position()
    return await drain(source.stream(start, until))


@pytest.fixture
def sync_db(mongo_uri, mongo_db):
    with MongoClient(mongo_uri, uuidRepresentation="standard") as client:
        yield client[mongo_db]


@pytest.mark.parametrize("full_document", ["updateLookup", "whenAvailable"])
def test_every_operation_and_type_arrives(mongo_uri, mongo_db, sync_db, tmp_path, full_document):
    """``updateLookup``: rows are documents as looked up now, so the updates of a document deleted
    since give no row (F22). ``whenAvailable`` without post-images: those updates arrive as
    partial rows from the events' own fields."""

    async def run():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["items"], full_document=full_document)
        await source.open()
        try:
            start = await source.current_position()
            keep, gone = every_type(1), every_type(2)
            sync_db.items.insert_many([keep, gone])
            sync_db.items.update_one({"_id": keep["_id"]}, {"$set": {"s": "renamed"}})
            sync_db.items.update_one({"_id": keep["_id"]}, {"$unset": {"flag": 1}})
            sync_db.items.update_one({"_id": keep["_id"]}, {"$set": {"sub.deep.y": "nested"}})
            sync_db.items.update_one({"_id": keep["_id"]}, {"$push": {"tags": "c"}})
            sync_db.items.update_one({"_id": gone["_id"]}, {"$set": {"s": "last", "i32": 7}})
            sync_db.items.update_one({"_id": gone["_id"]}, {"$unset": {"dbl": 1}})
            sync_db.items.update_one({"_id": gone["_id"]}, {"$set": {"sub.x": 99}})
            sync_db.items.delete_one({"_id": gone["_id"]})
            replaced = {**every_type(3), "_id": keep["_id"], "extra": "new"}
            sync_db.items.replace_one({"_id": keep["_id"]}, replaced)
            batches = await _changes(source, start, sync_db)
        finally:
            await source.close()
        return keep, gone, replaced, batches

    keep, gone, replaced, batches = asyncio.run(run())
    assert {b.table for b in batches} == {"items"}
    assert all(b.key == ("_id",) for b in batches)
    rows = rows_of(batches, "items")
    looked_up = full_document == "updateLookup"
    keep_updates, gone_updates = ["u"] * 4, [] if looked_up else ["u"] * 3
    assert [r["_op"] for r in rows] == ["c", "c", *keep_updates, *gone_updates, "d", "c"]
    first = rows[0]
    assert first["_id"] == str(keep["_id"])
    assert first["i32"] == 1 and first["i64"] == 2**40 + 1 and first["dbl"] == 0.25
    assert first["dec"] == Decimal("1.10") and first["flag"] is False
    assert first["at"] == dt.datetime(2024, 5, 1, 12, 0, 1, 123000, tzinfo=UTC)
    assert first["raw"] == b"\x00\xffbytes" and first["uid"] == str(uuid.UUID(int=2))
    assert first["nothing"] is None and first["sub"] == {"x": 1, "deep": {"y": "z"}}
    assert first["tags"] == ["a", "b"]
    schema = batches[0].data.schema
    assert schema.field("_id").metadata[b"bson_type"] == b"objectId"
    assert schema.field("dec").metadata[b"bson_type"] == b"decimal"
    assert schema.field("uid").metadata[b"bson_type"] == b"uuid"
    # metadata columns: resume-token positions in cluster-time order, commit times
    assert all(r["_pos"] and ":" in r["_pos"] for r in rows)
    assert [r["_pos"][:16] for r in rows] == sorted(r["_pos"][:16] for r in rows)
    assert all(r["_ts"].tzinfo is not None for r in rows)
    assert batches[-1].meta["resume"] == rows[-1]["_pos"]

    gone_rows = [r for r in rows if r["_id"] == str(gone["_id"]) and r["_op"] == "u"]
    if looked_up:
        assert gone_rows == []  # gone when looked up: the delete settles the key
    else:
        # updates of the deleted document: partial rows, never a wrong full row
        set_row, unset_row, nested_row = gone_rows
        assert set_row["s"] == "last" and set_row["i32"] == 7
        assert set_row["_unsent.dec"] and set_row["_unsent.sub"] and not set_row["_unsent.s"]
        assert unset_row["dbl"] is None and not unset_row["_unsent.dbl"]
        assert nested_row["_unsent.sub"]  # a nested path without a document: keeps the target's
    assert not [c for b in batches for c in b.data_columns if "." in c]  # no dotted columns

    # replaying everything gives the source's final state
    model: dict = {}
    replay(model, batches, "items")
    assert stripped(model) == canonical(list(sync_db.items.find()))
    assert stripped(model)[str(keep["_id"])]["extra"] == "new"


def test_full_document_updates_send_removed_fields_as_null(mongo_uri, mongo_db, sync_db, tmp_path):
    async def run():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["items"])
        await source.open()
        try:
            start = await source.current_position()
            doc = every_type(5)
            sync_db.items.insert_many([doc, {"_id": "other", "only_here": 1}])
            sync_db.items.update_one({"_id": doc["_id"]}, {"$unset": {"s": 1}, "$set": {"i32": 1}})
            return doc, await _changes(source, start, sync_db)
        finally:
            await source.close()

    doc, batches = asyncio.run(run())
    rows = rows_of(batches, "items")
    assert [r["_op"] for r in rows] == ["c", "c", "u"]
    update = rows[2]
    assert update["s"] is None and not update["_unsent.s"]  # removed: sent as null
    assert update["_unsent.only_here"]  # never in this document: not sent, not null
    assert update["sub"] == {"x": 5, "deep": {"y": "z"}} and update["i32"] == 1


def test_restart_from_acknowledged_token_gets_exactly_the_later_changes(
    mongo_uri, mongo_db, sync_db, tmp_path
):
    async def first_run():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["items"])
        await source.open()
        try:
            start = await source.current_position()
            sync_db.items.insert_many([{"_id": i, "v": i} for i in range(5)])
            batches = await _changes(source, start, sync_db)
        finally:
            await source.close()
        return batches

    batches = asyncio.run(first_run())
    token = batches[-1].meta["resume"]
    assert [r["_id"] for r in rows_of(batches, "items")] == list(range(5))
    sync_db.items.insert_many([{"_id": i, "v": i} for i in range(5, 8)])
    sync_db.items.update_one({"_id": 1}, {"$set": {"v": 100}})

    async def second_run():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["items"])
        await source.open()
        try:
            return await drain(source.stream(token, await source.current_position()))
        finally:
            await source.close()

    later = rows_of(asyncio.run(second_run()), "items")
    assert [(r["_op"], r["_id"]) for r in later] == [("c", 5), ("c", 6), ("c", 7), ("u", 1)]
    assert later[-1]["v"] == 100


def test_read_ahead_delivers_every_event_once_also_when_stopped_midway(
    mongo_uri, mongo_db, sync_db, tmp_path
):
    """Flushes of 7 events: the next event is asked for while a flush is converted. Every
    event arrives once and in order; a consumer that stops after the first batch (a read-ahead
    under way) resumes from that batch's position and gets exactly the rest."""
    small = BatchConfig(max_rows=7, max_wait=5.0)

    async def run(start, until, first_only):
        source = make_source(mongo_uri, mongo_db, tmp_path, ["items"], batch=small)
        await source.open()
        try:
            batches = []
            async for batch in source.stream(start, until):
                batches.append(batch)
                if first_only and batch.meta.get("resume"):
                    break  # the generator closes with its read-ahead pending
            return batches
        finally:
            await source.close()

    async def positions():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["items"], batch=small)
        await source.open()
        try:
            return await source.current_position()
        finally:
            await source.close()

    start = asyncio.run(positions())
    sync_db.items.insert_many([{"_id": i, "v": i} for i in range(40)])
    until = asyncio.run(positions())
    everything = asyncio.run(run(start, until, first_only=False))
    assert [r["_id"] for r in rows_of(everything, "items")] == list(range(40))
    assert max(b.num_rows for b in everything) <= 7
    first = asyncio.run(run(start, until, first_only=True))
    got = [r["_id"] for r in rows_of(first, "items")]
    assert got == list(range(len(got))) and 0 < len(got) < 40
    rest = asyncio.run(run(first[-1].meta["resume"], until, first_only=False))
    assert [r["_id"] for r in rows_of(rest, "items")] == list(range(len(got), 40))


def test_quiet_stream_flushes_and_stops_when_closed(mongo_uri, mongo_db, sync_db, tmp_path):
    async def run():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["items"])
        await source.open()
        start = await source.current_position()
        seen = []

        async def consume():
            async for batch in source.stream(start):
                seen.append(batch)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.5)
        await asyncio.to_thread(sync_db.items.insert_one, {"_id": "one"})
        for _ in range(50):
            if seen:
                break
            await asyncio.sleep(0.1)
        await source.close()
        await asyncio.wait_for(task, 5)
        return seen

    seen = asyncio.run(run())
    assert [r["_id"] for r in rows_of(seen, "items")] == ["one"]


def test_other_collections_are_filtered_and_drop_truncates(mongo_uri, mongo_db, sync_db, tmp_path):
    async def run():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["a", "b"])
        await source.open()
        try:
            start = await source.current_position()
            sync_db.a.insert_one({"_id": 1})
            sync_db.other.insert_one({"_id": 2})
            sync_db.b.insert_one({"_id": 3})
            sync_db.a.drop()
            sync_db.a.insert_one({"_id": 4})
            return await _changes(source, start, sync_db)
        finally:
            await source.close()

    batches = asyncio.run(run())
    assert {b.table for b in batches} == {"a", "b"}
    assert [(r["_op"], r["_id"]) for r in rows_of(batches, "a")] == [
        ("c", 1),
        ("t", None),
        ("c", 4),
    ]
    model: dict = {}
    replay(model, batches, "a")
    assert model == {4: {"_id": 4}}


def test_expired_token_raises_history_lost(mongo_uri, mongo_db, sync_db, tmp_path):
    async def run():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["items"])
        await source.open()
        try:
            start = await source.current_position()
            sync_db.items.insert_one({"_id": 1})
            batches = await _changes(source, start, sync_db)
            position = batches[-1].meta["resume"]
            expired = expired_like(position)
            with pytest.raises(HistoryLost) as caught:
                await drain(source.stream(expired, await source.current_position()))
            return caught.value, source.resnapshot_on_history_lost
        finally:
            await source.close()

    error, resnapshot = asyncio.run(run())
    assert "oplog" in str(error) and "resnapshot" in str(error)
    assert resnapshot is True  # the config default; the runtime re-copies


def test_heterogeneous_documents_make_a_usable_batch(
    mongo_uri, mongo_db, sync_db, tmp_path, caplog
):
    async def run():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["mixed"])
        await source.open()
        try:
            start = await source.current_position()
            sync_db.mixed.insert_many(
                [
                    {"_id": 1, "v": 1, "only_1": True, "n": {"a": {"b": {"c": 1}}}},
                    {"_id": 2, "v": "two", "n": {"a": {"b": {"c": "deep", "d": [1]}}}},
                    {"_id": 3, "n": {"a": None}},
                ]
            )
            return await _changes(source, start, sync_db)
        finally:
            await source.close()

    with caplog.at_level(logging.WARNING, logger="syncengine.sources.mongo"):
        batches = asyncio.run(run())
    rows = rows_of(batches, "mixed")
    assert [r["v"] for r in rows] == ["1", '"two"', None]
    assert [r["_unsent.v"] for r in rows] == [False, False, True]
    assert [r["_unsent.only_1"] for r in rows] == [False, True, True]
    # the nested conflict carries all of n as JSON (see bson_types.lift_json)
    assert [json.loads(r["n"]) for r in rows] == [
        {"a": {"b": {"c": 1}}},
        {"a": {"b": {"c": "deep", "d": [1]}}},
        {"a": None},
    ]
    assert "field v: int vs string" in caplog.text and "n.a.b.c" in caplog.text
    frame = batches[0].to_polars()
    assert frame.height == 3


def test_drop_database_truncates_and_the_stream_continues_after_invalidate(
    mongo_uri, mongo_db, sync_db, tmp_path
):
    async def run():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["a", "b"])
        await source.open()
        seen = []
        try:
            start = await source.current_position()
            sync_db.a.insert_one({"_id": 1})
            sync_db.b.insert_one({"_id": 2})
            sync_db.client.drop_database(mongo_db)
            sync_db.a.insert_one({"_id": 3})  # the database again, after the invalidate
            async for batch in source.stream(start):
                seen.append(batch)
                if any(r["_id"] == 3 for r in rows_of(seen, "a")):
                    break
            return seen
        finally:
            await source.close()

    batches = asyncio.run(asyncio.wait_for(run(), 30))
    # each collection's drop event and the dropDatabase event both truncate (idempotent)
    ops_a = [(r["_op"], r["_id"]) for r in rows_of(batches, "a")]
    assert ops_a[0] == ("c", 1) and ops_a[-1] == ("c", 3)
    assert {op for op, _ in ops_a[1:-1]} == {"t"}
    ops_b = [(r["_op"], r["_id"]) for r in rows_of(batches, "b")]
    assert ops_b[0] == ("c", 2) and {op for op, _ in ops_b[1:]} == {"t"}
    model_a: dict = {}
    replay(model_a, batches, "a")
    assert model_a == {3: {"_id": 3}}


def test_scan_tables_and_lag(mongo_uri, mongo_db, sync_db, tmp_path):
    sync_db.items.insert_many([{"_id": i, "v": i} for i in range(30)])

    async def run():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["items"])
        await source.open()
        try:
            tables = await source.tables()
            scanned = await drain(source.scan("items"))
            start = await source.current_position()
            sync_db.items.insert_one({"_id": 99})
            batches = await drain(source.stream(start, await source.current_position()))
            lag = await source.lag(batches[-1].meta["resume"])
            return tables, scanned, lag, batches, source.state.get_chunks("p1")
        finally:
            await source.close()

    tables, scanned, lag, batches, chunks = asyncio.run(run())
    assert [(t.name, t.key, t.estimated_rows) for t in tables] == [("items", ("_id",), 30)]
    assert sorted(r["_id"] for r in rows_of(scanned, "items")) == list(range(30))
    assert chunks == []  # scan leaves no progress behind
    assert lag.position == batches[-1].meta["resume"]
    assert lag.lag_seconds is not None and 0 <= lag.lag_seconds < 30


def test_events_without_a_document_are_looked_up(mongo_uri, mongo_db, sync_db, tmp_path):
    """Servers may omit ``fullDocument`` on inserts/replaces: the row is read by ``_id``."""
    from syncengine.sources.mongo.events import event_rows

    sync_db.items.insert_one({"_id": 1, "v": "current"})
    events = [
        {
            "_id": {"_data": f"t{n}"},
            "operationType": "insert",
            "clusterTime": bson.Timestamp(1_700_000_000, n),
            "ns": {"db": mongo_db, "coll": "items"},
            "documentKey": {"_id": n},
            "fullDocument": None,
        }
        for n in (1, 2)  # 2 no longer exists: its delete follows in the stream
    ]
    rows = [r for e in events for r in event_rows(e, ["items"])]

    async def run():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["items"])
        await source.open()
        try:
            return await source._look_up(rows)
        finally:
            await source.close()

    found = asyncio.run(run())
    assert [(r.op, r.doc) for r in found] == [("c", {"_id": 1, "v": "current"})]


def test_stream_filters_are_pushed_into_the_change_stream(mongo_uri, mongo_db, sync_db, tmp_path):
    from syncengine.mappings import to_mongo_stream_match

    async def run():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["a", "b"])
        source.stream_filters["a"] = to_mongo_stream_match("status = 'open'")
        await source.open()
        try:
            start = await source.current_position()
            sync_db.a.insert_many([{"_id": 1, "status": "open"}, {"_id": 2, "status": "draft"}])
            sync_db.a.update_one({"_id": 2}, {"$set": {"n": 1}})
            sync_db.b.insert_one({"_id": 3, "status": "draft"})
            return await _changes(source, start, sync_db)
        finally:
            await source.close()

    batches = asyncio.run(run())
    # inserts that do not match are dropped at the server; updates always pass
    assert [(r["_op"], r["_id"]) for r in rows_of(batches, "a")] == [("c", 1), ("u", 2)]
    assert [(r["_op"], r["_id"]) for r in rows_of(batches, "b")] == [("c", 3)]


def test_a_replay_never_goes_back_behind_a_looked_up_document(
    mongo_uri, mongo_db, sync_db, tmp_path
):
    """F22: a looked-up document may already hold later changes, and the position fence files
    it under its event's earlier position. A restart that replays the later events of a document
    deleted since must not send their own (older) fields: they would pass the fence and move the
    row back (counter 3 → 2 in the Mongo → Postgres crash loop)."""
    sync_db.items.insert_one({"_id": 1, "counter": 0})

    async def run():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["items"])
        await source.open()
        try:
            start = await source.current_position()
            for _ in range(3):
                sync_db.items.update_one({"_id": 1}, {"$inc": {"counter": 1}})
            first = rows_of(await _changes(source, start, sync_db), "items")
            sync_db.items.delete_one({"_id": 1})
            # a crash right after applying the first row: the replay starts after it
            replayed = rows_of(await _changes(source, first[0]["_pos"], sync_db), "items")
            return first, replayed
        finally:
            await source.close()

    first, replayed = asyncio.run(run())
    # every update row is the document now: counter 3, filed under its own event's position
    assert [(r["_op"], r["counter"]) for r in first] == [("u", 3)] * 3
    assert [r["_op"] for r in replayed] == ["d"]
