"""The Mongo source under the real CLI: backfill, then incremental syncs, then verify."""

from __future__ import annotations

import datetime as dt

import psycopg
from bson import Decimal128, ObjectId
from pymongo import MongoClient

from tests.e2e.harness import CLI


def test_sync_once_twice_then_verify(mongo_uri, mongo_db, pg_target_dsn, tmp_path):
    config = f"""
pipelines:
  orders:
    source: {{type: mongo, uri: "${{SRC}}", database: {mongo_db}, collections: [orders]}}
    target: {{type: postgres, dsn: "${{TGT}}"}}
    batch: {{max_rows: 1000, max_wait: 200ms}}
"""
    cli = CLI(tmp_path, config, {"SRC": mongo_uri, "TGT": pg_target_dsn})
    with MongoClient(mongo_uri) as client:
        orders = client[mongo_db].orders
        orders.insert_many(
            [
                {
                    "_id": ObjectId(),
                    "n": i,
                    "amount": Decimal128(f"{i}.50"),
                    "at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
                    "customer": {"email": f"a{i}@x"},
                }
                for i in range(40)
            ]
        )
        cli.run("sync", "--once")
        orders.insert_one({"_id": ObjectId(), "n": 100, "amount": Decimal128("9.999")})
        orders.update_many({"n": {"$lt": 5}}, {"$set": {"n": -1}})
        orders.delete_many({"n": {"$gt": 35, "$lt": 40}})
        cli.run("sync", "--once")
        expected = sorted(d["n"] for d in orders.find())
    result = cli.run("verify")
    assert "identical" in result.stdout
    with psycopg.connect(pg_target_dsn) as conn:
        got = sorted(r[0] for r in conn.execute("SELECT n FROM orders").fetchall())
    assert got == expected


def _fence_rows(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM _syncengine.shadow WHERE target_table = 'orders'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_first_backfill_keeps_no_fence_rows_a_rebackfill_does(
    mongo_uri, mongo_db, pg_target_dsn, tmp_path
):
    """A first backfill's rows sit where the stream starts (``at_resume``): no shadow row per
    document. A re-backfill keeps the older checkpoint, so its rows are fenced as before."""
    config = f"""
pipelines:
  orders:
    source: {{type: mongo, uri: "${{SRC}}", database: {mongo_db}, collections: [orders]}}
    target: {{type: postgres, dsn: "${{TGT}}"}}
    batch: {{max_rows: 1000, max_wait: 200ms}}
"""
    cli = CLI(tmp_path, config, {"SRC": mongo_uri, "TGT": pg_target_dsn})
    with MongoClient(mongo_uri) as client:
        orders = client[mongo_db].orders
        orders.insert_many([{"_id": i, "n": i} for i in range(30)])
        cli.run("backfill")
        assert _fence_rows(pg_target_dsn) == 0
        orders.update_one({"_id": 3}, {"$set": {"n": -3}})
        orders.delete_one({"_id": 4})
        cli.run("sync", "--once")
        # in-order stream changes are fenced by the checkpoint committed with them: no row
        assert _fence_rows(pg_target_dsn) == 0
        cli.run("backfill")
        assert _fence_rows(pg_target_dsn) == 29  # the re-backfill's 29 documents are fenced
        orders.update_one({"_id": 5}, {"$set": {"n": -5}})
        cli.run("sync", "--once")
        expected = sorted(d["n"] for d in orders.find())
    assert "identical" in cli.run("verify").stdout
    with psycopg.connect(pg_target_dsn) as conn:
        got = sorted(r[0] for r in conn.execute("SELECT n FROM orders").fetchall())
    assert got == expected
