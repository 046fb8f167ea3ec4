"""The fixtures give real servers: Postgres with logical decoding, Mongo with change streams."""

from __future__ import annotations

import asyncio

import psycopg
from pymongo import AsyncMongoClient


def test_postgres_has_logical_decoding(pg_dsn):
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        assert conn.execute("SHOW wal_level").fetchone()[0] == "logical"
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("CREATE PUBLICATION smoke_pub FOR TABLE t")
        conn.execute("SELECT pg_create_logical_replication_slot('smoke_slot', 'pgoutput')")
        conn.execute("INSERT INTO t VALUES (1, 'a')")
        changes = conn.execute(
            "SELECT count(*) FROM pg_logical_slot_peek_binary_changes('smoke_slot', NULL, NULL, "
            "'proto_version', '1', 'publication_names', 'smoke_pub')"
        ).fetchone()[0]
        assert changes >= 1
        conn.execute("SELECT pg_drop_replication_slot('smoke_slot')")


def test_mongo_change_stream_watch_and_resume(mongo_uri, mongo_db):
    async def scenario():
        client = AsyncMongoClient(mongo_uri)
        coll = client[mongo_db]["items"]
        async with await coll.watch() as stream:
            await coll.insert_one({"_id": 1, "v": "a"})
            first = await stream.next()
            token = stream.resume_token
        await coll.insert_one({"_id": 2, "v": "b"})
        async with await coll.watch(start_after=token) as stream:
            resumed = await stream.next()
        await client.close()
        return first, resumed

    first, resumed = asyncio.run(scenario())
    assert first["operationType"] == "insert" and first["documentKey"] == {"_id": 1}
    assert resumed["operationType"] == "insert" and resumed["documentKey"] == {"_id": 2}
