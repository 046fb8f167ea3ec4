"""A change group that joins Mongo batches typing a field differently lands in Postgres as one
decode of their documents would: the target's column is what the joined values need."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import psycopg
from bson import Int64

from syncengine.codecs.bson_arrow import decode_documents
from syncengine.config.models import PipelineConfig
from syncengine.runtime.pipeline import Pipeline
from syncengine.sources.mongo.batches import snapshot_batch
from syncengine.state import SQLiteStateStore

TS = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
BIG = 2**60 + 1  # a double cannot hold it: 2**60 and 2**60 + 1 are the same double


async def _process(mongo_uri: str, mongo_db: str, dsn: str, parts: list[list[dict]]) -> None:
    config = PipelineConfig.model_validate(
        {
            "source": {"type": "mongo", "uri": mongo_uri, "database": mongo_db,
                       "collections": ["things"]},
            "target": {"type": "postgres", "dsn": dsn},
        }
    )  # fmt: skip
    pipeline = Pipeline("joined", config, SQLiteStateStore(":memory:"))
    await pipeline.open()
    try:
        batches = [
            snapshot_batch("things", decode_documents(docs), f"{i:04d}", TS, {})
            for i, docs in enumerate(parts)
        ]
        await pipeline.process(batches, None)
    finally:
        await pipeline.close()


def _apply(mongo_uri: str, mongo_db: str, dsn: str, parts: list[list[dict]]) -> None:
    asyncio.run(_process(mongo_uri, mongo_db, dsn, parts))


def test_a_long_beside_a_double_in_one_group_keeps_every_digit(mongo_uri, mongo_db, pg_target_dsn):
    _apply(
        mongo_uri,
        mongo_db,
        pg_target_dsn,
        [[{"_id": 1, "v": Int64(BIG)}], [{"_id": 2, "v": 0.5}]],
    )
    column, rows = _stored(pg_target_dsn)
    assert column == "jsonb"
    assert json.loads(rows[1]) in (BIG, {"$numberLong": str(BIG)})
    assert json.loads(rows[2]) == 0.5


def test_a_long_a_double_holds_beside_a_double_is_a_double_column(
    mongo_uri, mongo_db, pg_target_dsn
):
    _apply(
        mongo_uri, mongo_db, pg_target_dsn, [[{"_id": 1, "v": Int64(7)}], [{"_id": 2, "v": 0.5}]]
    )
    column, rows = _stored(pg_target_dsn)
    assert column == "double precision"
    assert {k: float(v) for k, v in rows.items()} == {1: 7.0, 2: 0.5}


def _stored(dsn: str) -> tuple[str, dict[int, str]]:
    """The type of column ``v`` and each row's value as text."""
    with psycopg.connect(dsn) as conn:
        column = conn.execute(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'things' AND column_name = 'v'"
        ).fetchone()
        rows = conn.execute("SELECT _id, v::text FROM things ORDER BY _id").fetchall()
    assert column is not None
    return column[0], dict(rows)
