"""Before-images, post-images and transactions against the fixture's Mongo server."""

from __future__ import annotations

import asyncio

import pytest
from pymongo import MongoClient

from syncengine.config.models import BatchConfig
from syncengine.sources.base import resume_position
from tests.integration.mongosource.mongosource_helpers import drain, make_source, rows_of


@pytest.fixture
def sync_client(mongo_uri):
    with MongoClient(mongo_uri, uuidRepresentation="standard") as client:
        yield client


def test_before_images_of_a_document_deleted_since_the_updates(
    mongo_uri, mongo_db, sync_client, tmp_path
):
    """Under ``updateLookup`` the updates of a document gone when looked up give no row, even
    though the pre-image could rebuild them as of their events: an as-of-event row after a
    looked-up (newer) one would move the row back on a replay (F22). The delete carries the
    last before-image; the exact rebuild itself is unit-tested (``apply_update``)."""
    db = sync_client[mongo_db]
    db.create_collection("items", changeStreamPreAndPostImages={"enabled": True})

    async def run():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["items"], before_images=True)
        await source.open()
        try:
            start = await source.current_position()
            db.items.insert_one({"_id": 1, "sub": {"a": 1, "b": 2}, "arr": [1, 2, 3], "s": "x"})
            db.items.update_one({"_id": 1}, {"$set": {"sub.a": 10, "arr.1": 20}})
            db.items.update_one({"_id": 1}, {"$unset": {"sub.b": 1}, "$set": {"s": "y"}})
            db.items.delete_one({"_id": 1})
            return await drain(source.stream(start, await source.current_position()))
        finally:
            await source.close()

    rows = rows_of(asyncio.run(run()), "items")
    assert [r["_op"] for r in rows] == ["c", "d"]
    assert rows[1]["_before.s"] == "y" and rows[1]["_before.sub"] == {"a": 10}


def test_post_images_with_full_document_when_available(mongo_uri, mongo_db, sync_client, tmp_path):
    db = sync_client[mongo_db]
    db.create_collection("items", changeStreamPreAndPostImages={"enabled": True})

    async def run():
        source = make_source(
            mongo_uri, mongo_db, tmp_path, ["items"], full_document="whenAvailable"
        )
        await source.open()
        try:
            start = await source.current_position()
            db.items.insert_one({"_id": 1, "n": 1})
            db.items.update_one({"_id": 1}, {"$inc": {"n": 1}})
            db.items.update_one({"_id": 1}, {"$inc": {"n": 1}, "$set": {"s": "x"}})
            db.items.delete_one({"_id": 1})
            return await drain(source.stream(start, await source.current_position()))
        finally:
            await source.close()

    rows = rows_of(asyncio.run(run()), "items")
    # post-images survive the delete (updateLookup would find nothing): full rows, all sent
    assert [r["_op"] for r in rows] == ["c", "u", "u", "d"]
    assert rows[1]["n"] == 2 and rows[2]["n"] == 3 and rows[2]["s"] == "x"
    assert not any(r.get("_unsent.n") for r in rows[:3])
    assert rows[1]["_unsent.s"] and not rows[2]["_unsent.s"]


def test_resume_positions_never_fall_inside_a_transaction(
    mongo_uri, mongo_db, sync_client, tmp_path
):
    db = sync_client[mongo_db]
    db.create_collection("a")
    db.create_collection("b")

    async def run():
        source = make_source(
            mongo_uri, mongo_db, tmp_path, ["a", "b"], batch=BatchConfig(max_rows=2, max_wait=5)
        )
        await source.open()
        try:
            start = await source.current_position()
            db.a.insert_one({"_id": "before"})
            with sync_client.start_session() as session, session.start_transaction():
                db.a.insert_one({"_id": "t1"}, session=session)
                db.b.insert_one({"_id": "t2"}, session=session)
                db.a.insert_one({"_id": "t3"}, session=session)
            db.b.insert_one({"_id": "after"})
            return await drain(source.stream(start, await source.current_position()))
        finally:
            await source.close()

    batches = asyncio.run(run())
    all_rows = {r["_id"]: r for t in ("a", "b") for r in rows_of(batches, t)}
    assert set(all_rows) == {"before", "t1", "t2", "t3", "after"}
    assert all_rows["t1"]["_txid"] is not None
    resumes = [resume_position(b) for b in batches]
    carried = [r for r in resumes if r is not None]
    txn_positions = {all_rows[k]["_pos"] for k in ("t1", "t2", "t3")}
    assert not set(carried) & txn_positions  # never resume inside the transaction
    assert carried[0] == all_rows["before"]["_pos"]
    assert carried[-1] == all_rows["after"]["_pos"]
