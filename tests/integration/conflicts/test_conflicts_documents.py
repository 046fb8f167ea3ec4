"""Documents in real targets: JSON text in Postgres ``jsonb`` and sub-documents in Mongo.

The target gives documents back in its own form (``jsonb::text`` reorders keys and adds spaces;
Mongo returns sub-documents); detection must not mistake that for a change, and ``merge`` must
merge inside the document.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import psycopg
import pyarrow as pa
from pymongo import MongoClient

from syncengine.changes import ChangeBatch
from syncengine.config.models import ConflictsConfig, MongoTargetConfig, PostgresTargetConfig
from syncengine.conflicts import ConflictResolver
from syncengine.state import SQLiteStateStore
from syncengine.targets import make_target
from syncengine.targets.base import Checkpoint, TableSpec

JSON_SPEC = TableSpec(
    "docs",
    ("id",),
    pa.schema(
        [
            pa.field("id", pa.int64()),
            pa.field("doc", pa.string(), metadata={"pg_type": "jsonb"}),
            pa.field("qty", pa.int64()),
        ]
    ),
)
META = pa.struct([("color", pa.string()), ("size", pa.int64())])
STRUCT_SPEC = TableSpec(
    "things",
    ("id",),
    pa.schema(
        [
            pa.field("id", pa.int64()),
            pa.field("meta", META, metadata={"bson_type": "object"}),
            pa.field("qty", pa.int64()),
        ]
    ),
)


def _batch(spec: TableSpec, rows: list[dict], op: str, start: int) -> ChangeBatch:
    n = len(rows)
    return ChangeBatch.build(
        spec.name, pa.Table.from_pylist(rows, schema=spec.schema), ops=[op] * n,
        positions=[f"{start + i:016X}" for i in range(n)],
        ts=[datetime(2024, 1, 1, tzinfo=UTC)] * n, key=["id"],
    )  # fmt: skip


async def _run(resolver, target, spec, rows, op, start):
    resolved = await resolver.resolve(spec, _batch(spec, rows, op, start))
    await target.apply([resolved.write], Checkpoint("s", f"{start:016X}"))
    return resolved


def test_jsonb_documents_in_postgres(pg_target_dsn, tmp_path):
    async def scenario() -> None:
        state = SQLiteStateStore(tmp_path / "state.db")
        config = PostgresTargetConfig(type="postgres", dsn=pg_target_dsn)
        target = make_target("p", config, state)
        await target.open()
        try:
            spec = await target.ensure_table(JSON_SPEC)
            merge = ConflictResolver("p", target, state, ConflictsConfig(strategy="merge"))
            compact = '{"b":{"y":1,"x":1},"a":1}'  # not jsonb's own formatting
            seeded = [{"id": 1, "doc": compact, "qty": 1}, {"id": 2, "doc": compact, "qty": 2}]
            await _run(merge, target, spec, seeded, "r", 1)
            again = await _run(merge, target, spec, seeded, "u", 10)
            assert (again.echoes, again.conflicts) == (2, 0)
            clean = await _run(merge, target, spec, [{"id": 2, "doc": compact, "qty": 5}], "u", 20)
            assert clean.conflicts == 0
            with psycopg.connect(pg_target_dsn, autocommit=True) as conn:
                conn.execute("UPDATE docs SET doc = jsonb_set(doc, '{b,x}', '7') WHERE id = 1")
            incoming = [{"id": 1, "doc": '{"a":2,"b":{"x":1,"y":9}}', "qty": 1}]
            r = await _run(merge, target, spec, incoming, "u", 30)
            assert r.outcomes == {"merged": 1}
            with psycopg.connect(pg_target_dsn) as conn:
                doc = conn.execute("SELECT doc FROM docs WHERE id = 1").fetchone()[0]
            assert doc == {"a": 2, "b": {"x": 7, "y": 9}}
        finally:
            await target.close()

    asyncio.run(scenario())


def test_sub_documents_in_mongo(mongo_uri, mongo_db, tmp_path):
    async def scenario() -> None:
        state = SQLiteStateStore(tmp_path / "state.db")
        config = MongoTargetConfig(type="mongo", uri=mongo_uri, database=mongo_db)
        target = make_target("p", config, state)
        await target.open()
        try:
            spec = await target.ensure_table(STRUCT_SPEC)
            merge = ConflictResolver("p", target, state, ConflictsConfig(strategy="merge"))
            seeded = [{"id": i, "meta": {"color": "red", "size": i}, "qty": i} for i in (1, 2)]
            await _run(merge, target, spec, seeded, "r", 1)
            again = await _run(merge, target, spec, seeded, "u", 10)
            assert (again.echoes, again.conflicts) == (2, 0)
            with MongoClient(mongo_uri) as client:
                client[mongo_db].things.update_one({"_id": 1}, {"$set": {"meta.color": "blue"}})
            incoming = [
                {"id": 1, "meta": {"color": "red", "size": 10}, "qty": 1},
                {"id": 2, "meta": {"color": "green", "size": 2}, "qty": 2},
            ]
            r = await _run(merge, target, spec, incoming, "u", 20)
            assert (r.conflicts, r.outcomes) == (1, {"merged": 1})
            with MongoClient(mongo_uri) as client:
                docs = {d["_id"]: d["meta"] for d in client[mongo_db].things.find({})}
            assert docs == {1: {"color": "blue", "size": 10}, 2: {"color": "green", "size": 2}}
        finally:
            await target.close()

    asyncio.run(scenario())
