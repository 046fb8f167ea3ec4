"""Mapping filters pushed into the Mongo snapshot ``find``s and the change stream ``$match``,
proven by PyMongo command monitoring on the engine's own client: the commands it sent and the
documents the server answered with. The target must still be exact, including documents that
leave the filter by an update or a replace, and deletes (never filtered at the server).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import bson
import psycopg
import pytest
from pymongo import MongoClient, monitoring

import syncengine.sources.mongo.source as mongo_source
from syncengine.config.models import PipelineConfig
from syncengine.runtime import runner
from syncengine.runtime.pipeline import Pipeline
from syncengine.state import SQLiteStateStore

DOCS = 600
OPEN = {"status": {"$eq": "open"}}
BIG = {"total": {"$gte": 95}}
#: the mapping also keeps a document lacking a field its filter reads (unsent: cannot tell)
LACKING = [{"status": {"$exists": False}}, {"total": {"$exists": False}}]
OPEN_KEPT = {"$or": [OPEN, LACKING[0]]}
BIG_KEPT = {"$or": [BIG, LACKING[1]]}


class Commands(monitoring.CommandListener):
    """Every command the engine's source client sent, and every reply it got."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.replies: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self.replies.append(dict(event.reply))

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def finds(self, collection: str) -> list[dict[str, Any]]:
        """The filters of the chunk reads (``find`` without ``limit``: not a bounds probe)."""
        chunks = [c for c in self.sent if c.get("find") == collection and not c.get("limit")]
        return [c.get("filter", {}) for c in chunks]

    def documents(self) -> list[dict[str, Any]]:
        """Every document (or change event) the server answered with."""
        out: list[dict[str, Any]] = []
        for reply in self.replies:
            cursor = reply.get("cursor") or {}
            for part in ("firstBatch", "nextBatch"):
                for item in cursor.get(part) or []:  # raw batches (the snapshot) are bytes
                    out.extend(bson.decode_all(item) if isinstance(item, bytes) else [dict(item)])
        return out


@pytest.fixture
def commands(monkeypatch: pytest.MonkeyPatch) -> Commands:
    """Command monitoring on the client the engine's Mongo source builds."""
    listener = Commands()
    real = mongo_source.connect
    monkeypatch.setattr(
        mongo_source,
        "connect",
        lambda uri, role, **options: real(uri, role, event_listeners=[listener], **options),
    )
    return listener


def pipeline(uri: str, db: str, tgt: str, state: SQLiteStateStore) -> Pipeline:
    config = PipelineConfig.model_validate(
        {
            "source": {
                "type": "mongo",
                "uri": uri,
                "database": db,
                "collections": ["orders", "notes"],
                "snapshot_chunk_docs": 200,
            },
            "target": {"type": "postgres", "dsn": tgt},
            "batch": {"max_rows": 500, "max_wait": "200ms"},
            "mappings": [
                {"source": "orders", "target": "open_orders", "filter": "status = 'open'"},
                {"source": "orders", "target": "big_orders", "filter": "total >= 95"},
                {"source": "notes", "filter": "lower(body) = 'keep'"},  # no Mongo translation
            ],
        }
    )
    return Pipeline("pushdown", config, state)


def ids(dsn: str, table: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        return [r[0] for r in conn.execute(f'SELECT "_id" FROM {table} ORDER BY 1')]


def expected(db: Any, match: dict[str, Any]) -> list[int]:
    return sorted(d["_id"] for d in db.orders.find(match, {"_id": 1}))


@pytest.mark.integration
def test_snapshot_and_stream_read_only_what_some_mapping_keeps(
    mongo_uri, mongo_db, pg_target_dsn, commands, caplog
):
    caplog.set_level(logging.INFO, logger="syncengine.sources.mongo")
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_uri)
    db = client[mongo_db]
    db.orders.insert_many(
        [
            {"_id": i, "status": "open" if i % 10 == 0 else "closed", "total": i % 100}
            for i in range(DOCS)
        ]
        + [{"_id": DOCS, "total": 1}]  # no status: NULL in the filter, not kept
    )
    db.notes.insert_many([{"_id": i, "body": "KEEP" if i % 2 else "drop"} for i in range(20)])
    state = SQLiteStateStore(":memory:")

    async def sync() -> None:
        p = pipeline(mongo_uri, mongo_db, pg_target_dsn, state)
        await p.open()
        try:
            await runner.sync_once(p)
        finally:
            await p.close()

    try:
        asyncio.run(sync())  # no checkpoint: backfill, then the stream up to now

        # Snapshot: every chunk find of orders carries the OR of both filters.
        finds = commands.finds("orders")
        assert len(finds) >= 2
        for where in finds:
            assert {"$or": [OPEN, BIG, *LACKING]} in where.get("$and", [where]), where
        kept = expected(db, {"$or": [OPEN, BIG, *LACKING]})
        answered = [d["_id"] for d in commands.documents() if "status" in d or "total" in d]
        assert sorted(answered) == kept and len(kept) < DOCS // 5
        # notes: not pushed, every document read; the mapping kept the matching ones
        assert commands.finds("notes") == [{}]
        assert "notes: mapping filter not pushed into the snapshot" in caplog.text
        assert ids(pg_target_dsn, "notes") == list(range(1, 20, 2))
        assert ids(pg_target_dsn, "open_orders") == expected(db, OPEN_KEPT)
        assert ids(pg_target_dsn, "big_orders") == expected(db, BIG_KEPT)

        # Stream: inserts are filtered at the server; updates, replaces and deletes are not.
        commands.sent.clear()
        commands.replies.clear()
        db.orders.insert_many(
            [{"_id": 1000 + i, "status": "closed", "total": 1} for i in range(30)]
            + [{"_id": 2000, "status": "open", "total": 1}]
            + [{"_id": 2001, "status": "x", "total": 99}]
        )
        db.orders.update_one({"_id": 10}, {"$set": {"status": "closed"}})  # leaves open_orders
        db.orders.update_one({"_id": 95}, {"$set": {"total": 1}})  # leaves big_orders
        db.orders.update_one({"_id": 1000}, {"$set": {"status": "open"}})  # enters open_orders
        db.orders.replace_one({"_id": 20}, {"status": "closed", "total": 2})  # leaves by replace
        db.orders.delete_one({"_id": 30})
        db.orders.delete_one({"_id": 1001})  # was never kept: deleting it is harmless
        asyncio.run(sync())

        (watch,) = [c for c in commands.sent if "pipeline" in c and c.get("aggregate") == 1]
        match = watch["pipeline"][-1]["$match"]
        pushed = {
            "$or": [
                {"operationType": {"$ne": "insert"}},
                {
                    "$or": [
                        {"fullDocument.status": {"$eq": "open"}},
                        {"fullDocument.total": {"$gte": 95}},
                        {"fullDocument.status": {"$exists": False}},
                        {"fullDocument.total": {"$exists": False}},
                    ]
                },
            ]
        }
        assert {"$and": [{"ns.coll": "orders"}, pushed]} in match["$or"], match
        events = [e for e in commands.documents() if "operationType" in e]
        inserted = sorted(e["documentKey"]["_id"] for e in events if e["operationType"] == "insert")
        assert inserted == [2000, 2001]  # the server dropped the 30 inserts no mapping keeps
        others = {(e["operationType"], e["documentKey"]["_id"]) for e in events}
        assert {("update", 10), ("update", 95), ("update", 1000), ("replace", 20)} <= others
        assert {("delete", 30), ("delete", 1001)} <= others

        open_now, big_now = ids(pg_target_dsn, "open_orders"), ids(pg_target_dsn, "big_orders")
        assert open_now == expected(db, OPEN_KEPT) and big_now == expected(db, BIG_KEPT)
        # left the filter by an update or a replace: deleted; entered it: written
        assert 10 not in open_now and 20 not in open_now and 95 not in big_now
        assert 1000 in open_now and 30 not in open_now and {2000, 2001} <= {*open_now, *big_now}
    finally:
        client.close()
