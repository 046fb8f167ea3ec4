"""Consistent parallel snapshot, resumable per chunk, followed by the stream."""

from __future__ import annotations

import asyncio
import json
import random
import threading

import pytest
from pymongo import AsyncMongoClient, MongoClient, monitoring

from syncengine.changes import concat_batches
from syncengine.sources.mongo.positions import time_position
from syncengine.sources.mongo.snapshot import encode_bound, scan_chunks
from syncengine.state.base import Chunk
from tests.integration.mongosource.mongosource_helpers import (
    canonical,
    drain,
    make_source,
    replay,
    stripped,
)

N = 1200


@pytest.fixture
def sync_db(mongo_uri, mongo_db):
    with MongoClient(mongo_uri, uuidRepresentation="standard") as client:
        yield client[mongo_db]


def _seed(db, n=N):
    db.docs.insert_many([{"_id": i, "v": i, "s": f"x{i}", "sub": {"k": i % 7}} for i in range(n)])


def _writer(db, stop: threading.Event, seed: int) -> None:
    """Inserts, updates (set, unset, nested) and deletes while the snapshot runs."""
    rng = random.Random(seed)
    next_id = N
    while not stop.is_set():
        pick = rng.randrange(N + 200)
        action = rng.random()
        if action < 0.3:
            db.docs.insert_one({"_id": next_id, "v": -next_id, "late": True})
            next_id += 1
        elif action < 0.55:
            db.docs.update_one({"_id": pick}, {"$set": {"v": rng.random(), "sub.k": 100}})
        elif action < 0.7:
            db.docs.update_one({"_id": pick}, {"$unset": {"s": 1}})
        elif action < 0.85:
            db.docs.replace_one({"_id": pick}, {"v": -1, "replaced": True})
        else:
            db.docs.delete_one({"_id": pick})


def test_snapshot_under_writes_then_stream_equals_source(mongo_uri, mongo_db, sync_db, tmp_path):
    _seed(sync_db)

    async def run():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["docs"], snapshot_chunk_docs=200)
        await source.open()
        stop = threading.Event()
        writer = threading.Thread(target=_writer, args=(sync_db, stop, 7))
        try:
            writer.start()
            snap = await drain(source.snapshot(parallel=3))
            stop.set()
            writer.join()
            position = await source.snapshot_position()
            changes = await drain(source.stream(position, await source.current_position()))
            chunks = source.state.get_chunks("p1", "docs")
            return snap, position, changes, chunks
        finally:
            stop.set()
            await source.close()

    snap, position, changes, chunks = asyncio.run(run())
    assert len(chunks) >= 4 and all(c.status == "done" for c in chunks)
    assert {b.meta["chunk"] for b in snap} == {c.chunk for c in chunks}
    rows = concat_batches(snap).data
    assert set(rows.column("_op").to_pylist()) == {"r"}
    assert set(rows.column("_pos").to_pylist()) == {position}
    assert len(changes) > 0  # the writer really ran during the snapshot
    model: dict = {}
    replay(model, snap, "docs")
    replay(model, changes, "docs")
    assert stripped(model) == canonical(list(sync_db.docs.find()))


def test_interrupted_snapshot_resumes_with_the_chunks_not_done(
    mongo_uri, mongo_db, sync_db, tmp_path
):
    _seed(sync_db)

    async def first():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["docs"], snapshot_chunk_docs=200)
        await source.open()
        got = []
        try:
            snapshot = source.snapshot(parallel=1)
            async for batch in snapshot:
                got.append(batch)
                if len({b.meta["chunk"] for b in got}) == 3:
                    break  # "crash" while the third chunk is being copied
            await snapshot.aclose()
            return got, await source.snapshot_position(), source.state.get_chunks("p1", "docs")
        finally:
            await source.close()

    got, position, chunks = asyncio.run(first())
    done = [c for c in chunks if c.status == "done"]
    assert 2 <= len(done) < len(chunks)

    async def second():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["docs"], snapshot_chunk_docs=200)
        await source.open()
        try:
            rest = await drain(source.snapshot(parallel=2))
            return rest, await source.snapshot_position(), source.state.get_chunks("p1", "docs")
        finally:
            await source.close()

    rest, position_after, chunks_after = asyncio.run(second())
    assert position_after == position  # the first attempt's cluster time is kept
    assert all(c.status == "done" for c in chunks_after)
    assert not {b.meta["chunk"] for b in rest} & {c.chunk for c in done}
    model: dict = {}
    replay(model, got, "docs")
    replay(model, rest, "docs")
    assert stripped(model) == canonical(list(sync_db.docs.find()))
    assert sum(b.num_rows for b in rest) < N


def test_snapshot_filter_and_mixed_id_types(mongo_uri, mongo_db, sync_db, tmp_path):
    sync_db.docs.insert_many(
        [{"_id": i, "even": i % 2 == 0} for i in range(300)]
        + [{"_id": f"s{i}", "even": True} for i in range(50)]
    )

    async def run():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["docs"], snapshot_chunk_docs=50)
        await source.open()
        try:
            return await drain(source.snapshot(where="even = true", parallel=2))
        finally:
            await source.close()

    batches = asyncio.run(run())
    table = concat_batches(batches).data
    # int and string _ids in one batch: the key falls back to extended-JSON text
    assert table.schema.field("_id").metadata[b"bson_type"] == b"json"
    ids = [str(json.loads(v)) for v in table.column("_id").to_pylist()]
    # mixed int/str _ids: read as one chunk, nothing lost; the filter is pushed into the scan
    assert sorted(ids) == sorted([str(i) for i in range(0, 300, 2)] + [f"s{i}" for i in range(50)])
    assert len(ids) == 200


def test_snapshot_killed_after_its_last_chunk_resumes_instead_of_starting_over(
    mongo_uri, mongo_db, sync_db, tmp_path
):
    """Every chunk committed, the backfill's checkpoint not (the process died in between):
    a fresh snapshot would stream from a later cluster time, and documents deleted since the
    chunks were read would stay in the target for good (F25)."""
    _seed(sync_db)

    async def attempt():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["docs"], snapshot_chunk_docs=200)
        await source.open()
        try:
            return await drain(source.snapshot(parallel=2)), await source.snapshot_position()
        finally:
            await source.close()

    got, position = asyncio.run(attempt())
    sync_db.docs.delete_many({"_id": {"$in": list(range(0, N, 9))}})
    rest, position_after = asyncio.run(attempt())

    async def replayed():
        source = make_source(mongo_uri, mongo_db, tmp_path, ["docs"], snapshot_chunk_docs=200)
        await source.open()
        try:
            return await drain(source.stream(position_after, await source.current_position()))
        finally:
            await source.close()

    model: dict = {}
    replay(model, got, "docs")
    replay(model, rest, "docs")
    replay(model, asyncio.run(replayed()), "docs")
    assert stripped(model) == canonical(list(sync_db.docs.find()))  # no deleted one left
    assert position_after == position  # resumed: the first attempt's cluster time is kept
    assert rest == []  # nothing left to read


class _Finds(monitoring.CommandListener):
    """The ``find`` commands a client sends."""

    def __init__(self) -> None:
        self.finds: list[dict] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "find":
            self.finds.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_scans_read_majority_data_no_older_than_the_noted_cluster_time(
    mongo_uri, mongo_db, sync_db
):
    """A URI's ``readPreference=secondary`` sends the scans to a secondary that may lag the
    noted cluster time, where the stream starts: read as it stood, the writes in between would
    be in neither. The test server has no secondary to lag, so this holds what reaches the
    wire: each chunk's ``find`` waits for the note (``afterClusterTime``) and reads majority-
    committed data (a ``local`` read may copy a write a failover rolls back)."""
    _seed(sync_db, 300)
    noted = sync_db.client.admin.command("hello")["operationTime"]
    listener = _Finds()

    async def scanned() -> int:
        client = AsyncMongoClient(mongo_uri, event_listeners=[listener])
        try:
            coll = client[mongo_db]["docs"]
            chunks = [
                Chunk("docs", 0, None, encode_bound(150)),
                Chunk("docs", 1, encode_bound(150), None),
            ]
            rows = 0
            async for batch in scan_chunks(
                {"docs": coll}, chunks, position=time_position(noted), wheres={},
                parallel=2, batch_rows=100, mark_done=lambda _: None,
            ):  # fmt: skip
                rows += batch.data.num_rows
            return rows
        finally:
            await client.close()

    assert asyncio.run(scanned()) == 300
    assert len(listener.finds) == 2
    for find in listener.finds:
        assert find["readConcern"] == {"level": "majority", "afterClusterTime": noted}
