"""A two-way direction into Mongo whose target document is written by a person between the
group's read-back and its apply (real SecantusDB, the forward direction of a Mongo <-> Mongo
pipeline run in-process).

The apply re-reads what it is about to overwrite and refuses (:mod:`syncengine.targets.mongo.
readback`); the pipeline then reads and decides that group again at once, seeing the person's
write, instead of failing the stream back to its checkpoint. Under ``prefer: target`` the
person's write is a conflict the target side wins, so it is kept, and audited. A group whose
documents keep moving is given up after a few attempts, with the retriable error, nothing of
it committed.
"""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from bson import Int64
from pymongo import MongoClient

from syncengine.config import parse_config
from syncengine.errors import GroupMoved
from syncengine.runtime import runner
from syncengine.runtime.pipeline import DECIDE_ATTEMPTS, Pipeline
from syncengine.state import SQLiteStateStore

CONFIG = textwrap.dedent(
    """
    pipelines:
      orders:
        two_way: true
        source: {{type: mongo, uri: "{uri}", database: "{src}", collections: [items]}}
        target: {{type: mongo, uri: "{uri}", database: "{tgt}"}}
        conflicts: {conflicts}
        batch: {{max_rows: 1000, max_wait: 50ms}}
    """
)


@pytest.fixture
def sides(mongo_uri: str, mongo_db: str) -> Iterator[tuple[str, str, str]]:
    target = f"db_{uuid.uuid4().hex[:10]}"
    with MongoClient(mongo_uri) as client:
        client[mongo_db].create_collection("items", changeStreamPreAndPostImages={"enabled": True})
        client[mongo_db]["items"].insert_many([{"_id": Int64(i), "qty": 0} for i in (1, 2, 3)])
    yield mongo_uri, mongo_db, target
    with MongoClient(mongo_uri) as client:
        client.drop_database(target)


def qty(uri: str, db: str) -> dict[int, Any]:
    with MongoClient(uri) as client:
        return {d["_id"]: d["qty"] for d in client[db]["items"].find()}


def forward(tmp_path: Any, uri: str, src: str, tgt: str, conflicts: str) -> Pipeline:
    text = CONFIG.format(uri=uri, src=src, tgt=tgt, conflicts=conflicts)
    config = parse_config(text, env={})
    return Pipeline("orders", config.pipelines["orders"], SQLiteStateStore(tmp_path / "s.db"))


def person_writes_before_applies(pipeline: Pipeline, uri: str, db: str, times: int) -> list[int]:
    """Before each of the first ``times`` applies that write documents, a person sets key 1's
    ``qty`` on the target (a new value each time); returns the values written."""
    apply = pipeline.target.apply
    written: list[int] = []

    async def applied(writes: Any, checkpoint: Any) -> Any:
        if len(written) < times and any(w.batch.num_rows for w in writes):
            written.append(100 + len(written))
            with MongoClient(uri) as client:
                client[db]["items"].update_one({"_id": Int64(1)}, {"$set": {"qty": written[-1]}})
        return await apply(writes, checkpoint)

    pipeline.target.apply = applied  # type: ignore[method-assign]
    return written


def test_a_group_overtaken_by_a_person_is_decided_again_and_the_write_judged(tmp_path, sides):
    uri, src, tgt = sides

    async def scenario() -> None:
        pipeline = forward(tmp_path, uri, src, tgt, "{prefer: target}")
        await pipeline.open()
        try:
            await runner.sync_once(pipeline)  # the backfill
            assert qty(uri, tgt) == {1: 0, 2: 0, 3: 0}
            with MongoClient(uri) as client:
                for key in (1, 2):
                    client[src]["items"].update_one({"_id": Int64(key)}, {"$set": {"qty": 7}})
            written = person_writes_before_applies(pipeline, uri, tgt, times=1)
            await runner.sync_once(pipeline)  # decided again in place: no retriable error
            assert written == [100]
            # key 1: the person's write, seen by the second decision, wins (prefer: target)
            assert qty(uri, tgt) == {1: 100, 2: 7, 3: 0}
            audit = pipeline.state.db.execute("SELECT row_key, outcome FROM audit").fetchall()
            assert audit == [('{"_id":1}', "local")]
        finally:
            await pipeline.close()

    asyncio.run(scenario())


def test_a_group_that_keeps_moving_is_left_to_the_checkpoint(tmp_path, sides):
    uri, src, tgt = sides

    async def scenario() -> None:
        # timestamp: a document of unknown version (the person's) is written over
        # provisionally, so every attempt writes key 1 again and meets the next write
        pipeline = forward(tmp_path, uri, src, tgt, "{strategy: timestamp}")
        await pipeline.open()
        try:
            await runner.sync_once(pipeline)
            checkpoint = await pipeline.checkpoint()
            with MongoClient(uri) as client:
                client[src]["items"].update_one({"_id": Int64(1)}, {"$set": {"qty": 7}})
            written = person_writes_before_applies(pipeline, uri, tgt, times=DECIDE_ATTEMPTS)
            with pytest.raises(GroupMoved):
                await runner.sync_once(pipeline)
            assert len(written) == DECIDE_ATTEMPTS
            assert await pipeline.checkpoint() == checkpoint  # nothing committed
            assert qty(uri, tgt)[1] == written[-1]  # the person's last write stands
        finally:
            await pipeline.close()

    asyncio.run(scenario())
