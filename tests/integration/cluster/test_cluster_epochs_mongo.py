"""Fencing epochs in a Mongo target: a stream attempt whose pipeline was claimed by a later
attempt cannot commit (the Mongo counterpart of ``test_cluster_epochs.py``).

No Temporal here: :class:`~syncengine.cluster.streamrun.StreamAttempt` runs on the real
Postgres source and the MongoDB-compatible test server. The late commit is made certain, not
timed: the test holds a transaction that wrote the document a change is about to be applied
to, so the attempt's transaction meets a write conflict and keeps retrying inside its commit
(as a worker paused mid-commit would) while a second claim of the pipeline commits. When the
test's transaction ends, the attempt's next try must be refused and rolled back whole: the
document and the checkpoint as they were. The next attempt resumes from the checkpoint and
applies the change once.
"""

from __future__ import annotations

import asyncio
import textwrap

import pytest
from pymongo import MongoClient

from syncengine.cluster.streamrun import StreamAttempt
from syncengine.config import parse_config
from syncengine.errors import Fenced, UsageError
from syncengine.state import SQLiteStateStore
from syncengine.targets.mongo.target import MongoTarget
from tests.e2e.harness import execute, rows
from tests.integration.cluster.test_cluster_epochs import TABLE, _until

CHECKPOINTS = "_syncengine_checkpoints"
EPOCHS = "_syncengine_epochs"


def pipeline_config(src: str, uri: str, database: str):
    text = textwrap.dedent(
        f"""
        pipelines:
          p:
            source: {{type: postgres, dsn: "{src}", tables: [public.counters]}}
            target: {{type: mongo, uri: "{uri}", database: {database}}}
            batch: {{max_rows: 1000, max_wait: 50ms}}
        """
    )
    return parse_config(text, env={}).pipelines["p"]


def test_a_mongo_commit_after_a_later_claim_is_refused_whole(tmp_path, pg_dsn, mongo_uri, mongo_db):
    execute(pg_dsn, TABLE, "INSERT INTO counters SELECT g, 0 FROM generate_series(1, 10) g")
    config = pipeline_config(pg_dsn, mongo_uri, mongo_db)
    client: MongoClient = MongoClient(mongo_uri)
    db = client[mongo_db]

    def n_of(key: int) -> int | None:
        found = db["counters"].find_one({"id": key})
        return None if found is None else int(found["n"])

    def checkpoint() -> object:
        found = db[CHECKPOINTS].find_one({})
        return None if found is None else found.get("position")

    async def scenario() -> None:
        first = StreamAttempt("p", config, SQLiteStateStore(tmp_path / "a.db"), "worker-a")
        stop = asyncio.Event()
        running = asyncio.ensure_future(first.run(stop, 3600))
        await _until(lambda: n_of(10) == 0 and checkpoint())
        assert first.epoch == 1
        execute(pg_dsn, "UPDATE counters SET n = 1 WHERE id = 1")  # the stream is live
        await _until(lambda: n_of(1) == 1)
        before = checkpoint()

        with client.start_session() as session:
            session.start_transaction()
            db["counters"].update_one({"id": 5}, {"$set": {"n": 0}}, session=session)
            execute(pg_dsn, "UPDATE counters SET n = 7 WHERE id = 5")
            await asyncio.sleep(2)  # the group meets the test's write and retries its commit
            assert not running.done()
            claimed = db[EPOCHS].find_one_and_update(
                {"_id": "p"}, {"$inc": {"epoch": 1}, "$set": {"holder": "worker-b"}}
            )
            assert claimed is not None and claimed["epoch"] == 1  # another attempt took over
            session.abort_transaction()
        with pytest.raises(Fenced, match="epoch 1 is stale .* epoch 2, held by worker-b"):
            await asyncio.wait_for(running, 150)
        assert n_of(5) == 0  # the refused group left nothing
        assert checkpoint() == before

        second = StreamAttempt("p", config, SQLiteStateStore(tmp_path / "b.db"), "worker-c")
        stop = asyncio.Event()
        running = asyncio.ensure_future(second.run(stop, 3600))
        await _until(lambda: n_of(5) == 7)
        assert second.epoch == 3
        stop.set()
        await asyncio.wait_for(running, 60)

    try:
        asyncio.run(scenario())
        docs = sorted((d["id"], d["n"]) for d in db["counters"].find())
        assert docs == rows(pg_dsn, "SELECT id, n FROM counters ORDER BY id")
        epoch = db[EPOCHS].find_one({"_id": "p"})
        assert (epoch["epoch"], epoch["holder"]) == (3, "worker-c")
    finally:
        client.close()


def test_a_mongo_target_without_transactions_is_refused(tmp_path, pg_dsn, mongo_uri, mongo_db):
    """Without transactions nothing could carry the epoch with the checkpoint."""
    config = pipeline_config(pg_dsn, mongo_uri, mongo_db)

    async def scenario() -> None:
        state = SQLiteStateStore(tmp_path / "s.db")
        target = MongoTarget("p", config.target, state, transactions=False)
        try:
            with pytest.raises(UsageError, match="needs a server that runs transactions"):
                await target.claim_epoch("worker-a")
        finally:
            await target.close()

    asyncio.run(scenario())
    assert MongoClient(mongo_uri)[mongo_db][EPOCHS].count_documents({}) == 0
