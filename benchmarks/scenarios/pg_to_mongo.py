"""Backfill Postgres → Mongo against PyMongo ``insert_many`` of the same documents.

The baseline's documents are built from the source rows before the clock starts (the same
values, BSON types: Decimal128 prices, UUID refs), then inserted in unordered batches of
10,000. So the baseline has no read or conversion cost at all; the engine's figure includes
the process start, reading Postgres and converting Arrow → BSON. Under ``remote`` (the
default) the engine keeps no state for an exported snapshot's rows, so it inserts them without
a transaction, converting the next slice while the previous one is inserted
(``syncengine/targets/mongo/inserts.py``). Issue 16 asks for ≥ 0.7× the baseline.
"""

from __future__ import annotations

from typing import Any

import psycopg
from bson.binary import Binary, UuidRepresentation
from bson.decimal128 import Decimal128
from pymongo import MongoClient

from benchmarks.checks import compare, doc_digest, expect_rows, mongo_docs, pg_rows
from benchmarks.core import Context, Scenario, ScenarioResult
from benchmarks.datagen import TABLE, create_table, insert_rows
from benchmarks.env import BenchEnv, pg_source
from benchmarks.measure import Stopwatch

NAME = "pg_to_mongo"
TITLE = "backfill Postgres→Mongo"
CHUNK = 10_000
TARGET_RATIO = 0.7
TARGET = f"≥ {TARGET_RATIO}× insert_many"


def run(ctx: Context) -> ScenarioResult:
    env = ctx.env
    rows = ctx.size(2_000, 1_000_000)
    timeout = 1500
    result = ScenarioResult(
        NAME,
        TITLE,
        unit="rows/s",
        baseline="PyMongo insert_many",
        rows=rows,
        target=TARGET,
    )
    src = env.new_pg_db("p2m_src")
    try:
        with psycopg.connect(src, autocommit=True) as conn:
            create_table(conn)
            insert_rows(conn, 1, rows)
        source_rows = pg_rows(src, TABLE)
        source = doc_digest(source_rows)
        expect_rows(source, rows, "source")
        docs = [to_document(row) for row in source_rows]
        del source_rows
        for attempt in range(ctx.repeats(1)):
            result.baseline_runs.append(rows / insert_many(env, docs, source))
            seconds, rss, result.check = engine_backfill(env, src, source, attempt, timeout)
            result.runs.append(rows / seconds)
            result.peak_rss_mb = max(result.peak_rss_mb or 0.0, rss)
    finally:
        env.drop_pg_db(src)
    result.finish()
    result.target_met = result.ratio is not None and result.ratio >= TARGET_RATIO
    return result


def to_document(row: dict[str, Any]) -> dict[str, Any]:
    doc = dict(row)
    doc["_id"] = doc.pop("id")
    doc["price"] = Decimal128(doc["price"])
    doc["ref"] = Binary.from_uuid(doc["ref"], UuidRepresentation.STANDARD)
    return doc


def insert_many(env: BenchEnv, docs: list[dict[str, Any]], source: object) -> float:
    database = env.new_mongo_db("p2m_base")
    try:
        with MongoClient(env.mongo.uri) as client:
            coll = client[database][TABLE]
            with Stopwatch() as watch:
                for start in range(0, len(docs), CHUNK):
                    coll.insert_many(docs[start : start + CHUNK], ordered=False)
        compare(source, doc_digest(mongo_docs(env.mongo.uri, database, TABLE)), "baseline")  # type: ignore[arg-type]
        return watch.seconds
    finally:
        env.drop_mongo_db(database)


def engine_backfill(
    env: BenchEnv, src: str, source: object, attempt: int, timeout: float
) -> tuple[float, float, str]:
    database = env.new_mongo_db("p2m_tgt")
    name = f"bench_pg_to_mongo_{attempt}"
    try:
        config = env.write_config(
            name,
            {
                "source": pg_source(src, [f"public.{TABLE}"]),
                "target": {"type": "mongo", "uri": env.mongo.uri, "database": database},
            },
        )
        run_ = env.engine("backfill", str(config), "--parallel", "2", timeout=timeout)
        target = doc_digest(mongo_docs(env.mongo.uri, database, TABLE))
        return run_.seconds, run_.peak_rss_mb, compare(source, target, "engine backfill")  # type: ignore[arg-type]
    finally:
        env.drop_mongo_db(database)
        env.drop_slots(src)


SCENARIO = Scenario(NAME, TITLE, run, target=TARGET, mongo=True)
