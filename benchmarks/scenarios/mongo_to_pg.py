"""Backfill Mongo → Postgres against a bare ``find_raw_batches`` + ``COPY`` loop, same run.

The collection holds the benchmark's documents (:func:`benchmarks.datagen.document`: int64
``_id``, int, string, double, date, bool, sub-document, UUID text). The baseline is what a user
could script without the engine: PyMongo's ``find_raw_batches`` over the collection, each raw
batch decoded with ``bson.decode_all`` (PyMongo's C decoder), every document's fields written
with psycopg's ``Copy.write_row`` into a table created beforehand (not timed) with the types a
user would pick (the sub-document as ``jsonb``), one transaction. It reads serially and does
nothing per row beyond that. The engine figure is ``syncengine backfill CONFIG --parallel 2``
into an empty database (the engine creates the table), including process start, planning the
``_id`` chunks and the final checkpoint. Both targets are checked against the collection.

The engine reads the collection as one chunk (``snapshot_chunk_docs`` above its size): the
test server, SecantusDB, has no index-backed ``_id`` ranges, so every range query (and the
planner's sorted ``find_one`` and ``$sample``) scans the whole collection, and the default
50,000-document chunks would make it scan 200,000 documents five times over (measured: 9.9
against 1.5 s of server CPU for 100,000 documents in two chunks). On MongoDB a range is an index
scan of its own documents; this figure is about what the engine adds to the bare read.
"""

from __future__ import annotations

from typing import Any

import bson
import psycopg
from bson.codec_options import CodecOptions
from psycopg import sql
from psycopg.types.json import Jsonb
from pymongo import MongoClient

from benchmarks.checks import compare, doc_digest, expect_rows, mongo_docs, pg_rows
from benchmarks.core import Context, Scenario, ScenarioResult
from benchmarks.datagen import document
from benchmarks.env import BenchEnv, pg_target
from benchmarks.measure import Stopwatch
from benchmarks.phases import phase_seconds

NAME = "mongo_to_pg"
TITLE = "backfill Mongo→Postgres"
COLLECTION = "bench_docs"
TARGET_RATIO = 0.7
SEED_BATCH = 10_000
READ_BATCH = 10_000
TARGET = f"≥ {TARGET_RATIO}× find_raw_batches + COPY"

FIELDS = ("_id", "qty", "name", "price", "created", "active", "attrs", "ref")
DDL = """CREATE TABLE {t} (
    _id bigint PRIMARY KEY,
    qty integer,
    name text,
    price double precision,
    created timestamptz,
    active boolean,
    attrs jsonb,
    ref text
)"""
CODEC = CodecOptions(tz_aware=True)
#: chunk size above any collection here: one chunk (see the module docstring)
ONE_CHUNK = 1_000_000_000


def run(ctx: Context) -> ScenarioResult:
    env = ctx.env
    # 200k, not 1M: the test server (SecantusDB) inserts ~5,000 documents/s, so seeding 1M
    # would take minutes before anything is measured; `--scale mongo_to_pg=5` gives 1M.
    rows = ctx.size(5_000, 200_000)
    timeout = 1500
    result = ScenarioResult(
        NAME,
        TITLE,
        unit="rows/s",
        baseline="find_raw_batches + COPY",
        rows=rows,
        target=TARGET,
    )
    database = env.new_mongo_db("m2p_src")
    try:
        with MongoClient(env.mongo.uri) as client:
            coll = client[database][COLLECTION]
            for start in range(1, rows + 1, SEED_BATCH):
                end = min(rows, start + SEED_BATCH - 1)
                coll.insert_many([document(i) for i in range(start, end + 1)], ordered=False)
        source = doc_digest(mongo_docs(env.mongo.uri, database, COLLECTION))
        expect_rows(source, rows, "source")
        for attempt in range(ctx.repeats(1)):
            seconds, check = find_raw_copy(env, database, source, env.limit(timeout))
            result.baseline_runs.append(rows / seconds)
            seconds, rss, result.check, phases = engine_backfill(
                env, database, source, attempt, timeout
            )
            result.runs.append(rows / seconds)
            result.peak_rss_mb = max(result.peak_rss_mb or 0.0, rss)
            if phases:
                result.extra["engine_phase_seconds"] = phases
            result.extra["baseline_check"] = check
    finally:
        env.drop_mongo_db(database)
    result.finish()
    result.target_met = result.ratio is not None and result.ratio >= TARGET_RATIO
    return result


def find_raw_copy(env: BenchEnv, database: str, source: Any, timeout: float) -> tuple[float, str]:
    """Seconds for the bare loop to copy the collection into a fresh database; its check."""
    tgt = env.new_pg_db("m2p_base")
    table = sql.Identifier(COLLECTION)
    copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
        table, sql.SQL(", ").join(sql.Identifier(f) for f in FIELDS)
    )
    try:
        with psycopg.connect(tgt) as conn, MongoClient(env.mongo.uri) as client:
            conn.execute(sql.SQL(DDL).format(t=table))
            conn.commit()
            coll = client[database][COLLECTION]
            with Stopwatch() as watch:
                with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                    for raw in coll.find_raw_batches({}, batch_size=READ_BATCH):
                        for doc in bson.decode_all(raw, CODEC):
                            copy.write_row(
                                (
                                    doc["_id"],
                                    doc["qty"],
                                    doc["name"],
                                    doc["price"],
                                    doc["created"],
                                    doc["active"],
                                    Jsonb(doc["attrs"]),
                                    doc["ref"],
                                )
                            )
                conn.commit()
            if watch.seconds > timeout:
                raise TimeoutError(f"baseline took {watch.seconds:.0f} s (limit {timeout:.0f} s)")
        return watch.seconds, compare(source, doc_digest(pg_rows(tgt, COLLECTION)), "baseline")
    finally:
        env.drop_pg_db(tgt)


def engine_backfill(
    env: BenchEnv, database: str, source: Any, attempt: int, timeout: float
) -> tuple[float, float, str, dict[str, float]]:
    """``syncengine backfill`` into a fresh database: (seconds, peak RSS MB, check, phases)."""
    tgt = env.new_pg_db("m2p_tgt")
    try:
        config = env.write_config(
            f"bench_mongo_to_pg_{attempt}",
            {
                "source": {
                    "type": "mongo",
                    "uri": env.mongo.uri,
                    "database": database,
                    "collections": [COLLECTION],
                    "snapshot_chunk_docs": ONE_CHUNK,
                },
                "target": pg_target(tgt),
            },
        )
        run_ = env.engine("backfill", str(config), "--parallel", "2", timeout=timeout)
        check = compare(source, doc_digest(pg_rows(tgt, COLLECTION)), "engine backfill")
        return run_.seconds, run_.peak_rss_mb, check, phase_seconds(run_.stderr)
    finally:
        env.drop_pg_db(tgt)


SCENARIO = Scenario(NAME, TITLE, run, target=TARGET, mongo=True)
