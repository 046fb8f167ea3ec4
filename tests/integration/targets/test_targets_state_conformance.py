"""The target-database state implementations against their protocols, on the real servers.

Each implementation of :mod:`syncengine.state.targetdb` is driven only through the protocol
(typed as it), with the handle its target uses: checkpoints and shadow rows written in a
transaction are there after it commits and absent after it rolls back, a truncated table loses
only its own rows, tombstones the checkpoint passed are purged, and (Postgres) chunk done-marks
round-trip. The rows are then read back with the driver, not with the implementation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pyarrow as pa
import pytest
from pymongo import AsyncMongoClient, MongoClient

from syncengine.changes import ChangeBatch
from syncengine.state.base import Chunk
from syncengine.state.targetdb import TargetDatabaseState, TargetSnapshotProgress
from syncengine.targets.base import Checkpoint, ShadowUpdate, TableSpec, TableWrite
from syncengine.targets.mongo.state import SHADOW, MongoSession, MongoTargetState
from syncengine.targets.postgres import ddl
from syncengine.targets.postgres.state import PostgresTargetState

SCHEMA = pa.schema([("id", pa.int64())])


class Rollback(Exception):
    """Raised inside a transaction to abort it."""


@dataclass
class Session:
    """A store, the handle its target reads with, and how to open a transaction on it."""

    store: TargetDatabaseState[Any]
    outside: Any
    transaction: Callable[[], AbstractAsyncContextManager[Any]]
    shadow_keys: Callable[[str], set[str]]


def write(table: str, upserts: list[tuple[str, str | None, str]], deletes=()) -> TableWrite:
    batch = ChangeBatch.build(table, SCHEMA.empty_table(), ops=[], positions=[], key=("id",))
    rows = pa.table(
        {
            "row_key": [k for k, _, _ in upserts],
            "row_hash": pa.array([h for _, h, _ in upserts], pa.string()),
            "base": pa.nulls(len(upserts), pa.string()),
            "position": [p for _, _, p in upserts],
        }
    )
    return TableWrite(TableSpec(table, ("id",), SCHEMA), batch, ShadowUpdate(rows, list(deletes)))


@asynccontextmanager
async def postgres(dsn: str) -> AsyncIterator[Session]:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    await ddl.ensure_state_schema(conn)

    @asynccontextmanager
    async def transaction() -> AsyncIterator[psycopg.AsyncConnection]:
        async with conn.transaction():
            yield conn

    def keys(table: str) -> set[str]:
        query = "SELECT row_key FROM _syncengine.shadow WHERE pipeline = 'p' AND target_table = %s"
        with psycopg.connect(dsn) as c:
            return {row[0] for row in c.execute(query, (table,))}

    try:
        yield Session(PostgresTargetState("p"), conn, transaction, keys)
    finally:
        await conn.close()


@asynccontextmanager
async def mongo(uri: str, name: str) -> AsyncIterator[Session]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, tz_aware=True)
    db = client[name]
    for collection in (SHADOW, "_syncengine_checkpoints"):  # transactions need them to exist
        await db.create_collection(collection, check_exists=False)

    @asynccontextmanager
    async def transaction() -> AsyncIterator[MongoSession]:
        async with client.start_session() as session:
            await session.start_transaction()
            try:
                yield MongoSession(db, session)
            except BaseException:
                await session.abort_transaction()
                raise
            await session.commit_transaction()

    def keys(table: str) -> set[str]:
        with MongoClient(uri) as sync:
            return {d["k"] for d in sync[name][SHADOW].find({"p": "p", "t": table})}

    try:
        yield Session(MongoTargetState("p"), MongoSession(db), transaction, keys)
    finally:
        await client.close()


@pytest.fixture(params=["postgres", "mongo"])
def session(request: pytest.FixtureRequest) -> Callable[[], AbstractAsyncContextManager[Session]]:
    if request.param == "postgres":
        dsn = request.getfixturevalue("pg_target_dsn")
        return lambda: postgres(dsn)
    uri, name = request.getfixturevalue("mongo_uri"), request.getfixturevalue("mongo_db")
    return lambda: mongo(uri, name)


def test_checkpoint_commits_with_its_transaction(session) -> None:
    async def scenario() -> None:
        async with session() as s:
            store, db = s.store, s.outside
            assert await store.read_checkpoint(db, "main") is None
            async with s.transaction() as tx:
                await store.write_checkpoint(tx, Checkpoint("main", "0A"))
            assert await store.read_checkpoint(db, "main") == "0A"
            with pytest.raises(Rollback):
                async with s.transaction() as tx:
                    await store.write_checkpoint(tx, Checkpoint("main", "0B"))
                    raise Rollback
            assert await store.read_checkpoint(db, "main") == "0A"
            await store.delete_checkpoint(db, "main")
            assert await store.read_checkpoint(db, "main") is None

    asyncio.run(scenario())


def test_shadow_rows_commit_with_their_transaction(session) -> None:
    async def scenario() -> None:
        async with session() as s:
            store, db = s.store, s.outside
            async with s.transaction() as tx:
                first = [write("t", [('{"id":1}', "h1", "01"), ('{"id":2}', "h2", "01")])]
                await store.write_shadow(tx, first, ())
                await store.write_shadow(tx, [write("u", [('{"id":1}', "h", "01")])], ())
            found = await store.read_shadow(db, "t", ['{"id":1}', '{"id":2}', '{"id":3}'])
            assert sorted(found.to_pylist(), key=lambda r: r["row_key"]) == [
                {"row_key": '{"id":1}', "row_hash": "h1", "base": None, "position": "01"},
                {"row_key": '{"id":2}', "row_hash": "h2", "base": None, "position": "01"},
            ]
            # one key (a keyless table's fence, every group) and a missing one
            one = await store.read_shadow(db, "t", ['{"id":2}'])
            assert one.to_pylist() == [
                {"row_key": '{"id":2}', "row_hash": "h2", "base": None, "position": "01"}
            ]
            assert (await store.read_shadow(db, "u", ['{"id":2}'])).num_rows == 0
            with pytest.raises(Rollback):
                async with s.transaction() as tx:
                    await store.write_shadow(tx, [write("t", [('{"id":3}', "h3", "02")])], ())
                    raise Rollback
            assert s.shadow_keys("t") == {'{"id":1}', '{"id":2}'}
            # a delete (tombstone: null hash) and a key deleted outright; fresh=False upserts
            async with s.transaction() as tx:
                changed = write("t", [('{"id":1}', None, "03")], deletes=['{"id":2}'])
                await store.write_shadow(tx, [changed], (), fresh=False)
            found = await store.read_shadow(db, "t", ['{"id":1}', '{"id":2}'])
            assert found.to_pylist() == [
                {"row_key": '{"id":1}', "row_hash": None, "base": None, "position": "03"}
            ]
            # a truncated table loses its own rows only, before the write's rows go in
            async with s.transaction() as tx:
                await store.write_shadow(tx, [write("t", [('{"id":9}', "h9", "04")])], {"t"})
            assert s.shadow_keys("t") == {'{"id":9}'}
            assert s.shadow_keys("u") == {'{"id":1}'}

    asyncio.run(scenario())


def test_many_shadow_rows_upsert_over_their_keys(session) -> None:
    """Enough rows for a store's bulk path (Postgres stages more than ``FEW_ROWS``) and a few
    for its small one, over keys it holds and keys it does not."""

    async def scenario() -> None:
        async with session() as s:
            store, db = s.store, s.outside
            keys = [f'{{"id":{i}}}' for i in range(150)]
            async with s.transaction() as tx:
                await store.write_shadow(tx, [write("t", [(k, "a", "01") for k in keys[:100]])], ())
            async with s.transaction() as tx:
                later = write("t", [(k, "b", "02") for k in keys[50:]])
                await store.write_shadow(tx, [later], (), fresh=False)
            async with s.transaction() as tx:
                last = write("t", [(k, "c", "03") for k in keys[:3]])
                await store.write_shadow(tx, [last], (), fresh=False)
            found = await store.read_shadow(db, "t", keys)
            got = {r["row_key"]: (r["row_hash"], r["position"]) for r in found.to_pylist()}
            want = {k: ("a", "01") for k in keys[:50]} | {k: ("b", "02") for k in keys[50:]}
            assert got == want | {k: ("c", "03") for k in keys[:3]}

    asyncio.run(scenario())


def test_tombstones_before_the_checkpoint_are_purged(session) -> None:
    async def scenario() -> None:
        async with session() as s:
            store = s.store
            async with s.transaction() as tx:
                rows = [('{"id":1}', None, "01"), ('{"id":2}', None, "05"), ('{"id":3}', "h", "01")]
                await store.write_shadow(tx, [write("t", rows)], ())
            # Mongo purges outside the data transaction, Postgres inside it: both work on
            # the handle they are given
            if isinstance(store, MongoTargetState):
                await store.purge_tombstones(s.outside, "03")
            else:
                async with s.transaction() as tx:
                    await store.purge_tombstones(tx, "03")
            assert s.shadow_keys("t") == {'{"id":2}', '{"id":3}'}

    asyncio.run(scenario())


def test_postgres_chunk_marks_round_trip(pg_target_dsn) -> None:
    async def scenario() -> None:
        async with postgres(pg_target_dsn) as s:
            marks: TargetSnapshotProgress[psycopg.AsyncConnection] = PostgresTargetState("p")
            chunk = Chunk("public.a", 0, "1", "100")
            with pytest.raises(Rollback):
                async with s.transaction() as tx:
                    await marks.mark_done(tx, chunk, 99)
                    raise Rollback
            assert await marks.done_chunks(s.outside, ["public.a"]) == []
            async with s.transaction() as tx:
                await marks.mark_done(tx, chunk, 99)
                await marks.mark_done(tx, Chunk("public.b", 0, None, None), 1)
            done = await marks.done_chunks(s.outside, ["public.a"])
            assert done == [Chunk("public.a", 0, "1", "100", "done", 99)]
            await marks.forget_chunks(s.outside, ["public.a"])
            assert await marks.done_chunks(s.outside, ["public.a", "public.b"]) == [
                Chunk("public.b", 0, None, None, "done", 1)
            ]

    asyncio.run(scenario())
