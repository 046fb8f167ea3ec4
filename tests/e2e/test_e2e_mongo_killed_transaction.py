"""A run killed inside its Mongo apply transaction does not hold up the next run
(syncengine/targets/mongo/sessions.py), through the real CLI on a test server of its own.

The killed run's transaction stays open on the server, holding every document it wrote, until
the server's transaction lifetime ends it (60 s on mongod; the test server reaps only when a
transaction comes by). The next run's apply met write conflicts on those documents and retried
for that long. It now ends the sessions earlier runs recorded before its first transaction.
"""

from __future__ import annotations

import asyncio
import shutil
import textwrap
import time
import uuid

import pytest
from bson import Binary
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from tests.e2e.harness import CLI
from tests.servers import MongoServer

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      copy:
        source: {type: mongo, uri: "${MONGO_URI}", database: "${SRC}", collections: [things]}
        target: {type: mongo, uri: "${MONGO_URI}", database: "${TGT}"}
    """
)
WRITE_CONFLICT = 112


def held(uri: str, db: str, key: int) -> bool:
    """Whether an open transaction holds document ``key``: one attempt of a transactional
    write to it meets a write conflict."""
    with MongoClient(uri) as client, client.start_session() as session:
        session.start_transaction()
        try:
            client[db]["things"].update_one({"_id": key}, {"$set": {"probe": 1}}, session=session)
        except OperationFailure as exc:
            return exc.code == WRITE_CONFLICT
        finally:
            if session.in_transaction:
                session.abort_transaction()
    return False


@pytest.mark.timeout(300)
def test_a_run_killed_in_its_transaction_does_not_hold_the_next(tmp_path, throwaway_mongo):
    uri, src = throwaway_mongo
    tgt = f"{src}_t"
    cli = CLI(tmp_path, CONFIG, {"MONGO_URI": uri, "SRC": src, "TGT": tgt})
    with MongoClient(uri) as client:
        things = client[src]["things"]
        things.insert_many([{"_id": i, "n": 0} for i in range(50)])
        cli.run("sync", "--once")  # the backfill
        things.update_many({}, {"$set": {"n": 1}})

        cli.env["SYNCENGINE_FAULT"] = "mongo.before_commit:kill"
        killed = cli.run("sync", "--once", check=False)
        cli.env.pop("SYNCENGINE_FAULT")
        assert killed.returncode == -9
        assert held(uri, tgt, 7)  # the dead run's transaction has them

        started = time.monotonic()
        cli.run("sync", "--once")
        took = time.monotonic() - started
        assert took < 30, f"the next run took {took:.0f} s"
        assert not held(uri, tgt, 7)
        copy = {d["_id"]: d["n"] for d in client[tgt]["things"].find()}
        assert copy == {i: 1 for i in range(50)}
        assert "ended 1 earlier session(s)" in cli.logs[-1]
        # the records left are this run's own, for the next run to end
        (left,) = client[tgt]["_syncengine_sessions"].find()
        assert left["p"] == "copy"


def test_a_server_refusing_kill_sessions_leaves_the_run_going(caplog):
    """``killSessions`` refused (as by a user without the privilege: error 13, made so by a
    fail point on a server of the test's own): the run goes on, warned, and the records are
    forgotten."""
    from pymongo import AsyncMongoClient

    from syncengine.targets.mongo import sessions

    server = MongoServer(test_commands=True).start()

    async def scenario() -> int:
        client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(server.uri)
        try:
            db = client["d"]
            await client.admin.command(
                "configureFailPoint", "failCommand", mode="alwaysOn",
                data={"failCommands": ["killSessions"], "errorCode": 13},
            )  # fmt: skip
            lsid = {"id": Binary(uuid.uuid4().bytes, 4)}
            await db[sessions.SESSIONS].insert_one({"_id": ["copy", 1], "p": "copy", "lsid": lsid})
            ended = await sessions.end_earlier(db, "copy")
            assert await db[sessions.SESSIONS].count_documents({}) == 0
            return ended
        finally:
            await client.close()

    try:
        assert asyncio.run(scenario()) == 0
    finally:
        server.kill()
        shutil.rmtree(server.root, ignore_errors=True)
    assert "could not end the sessions of earlier runs" in caplog.text
