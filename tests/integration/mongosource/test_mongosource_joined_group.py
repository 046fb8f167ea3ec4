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
from tests.integration.pgcolumns import stored_column

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
    return stored_column(dsn, "things", "v", "_id")


def test_a_long_then_doubles_in_later_groups_keeps_every_digit(mongo_uri, mongo_db, pg_target_dsn):
    """Across groups: the bigint column holding a long beyond 2^53 becomes numeric, not a
    double precision column that would round it."""
    _apply(mongo_uri, mongo_db, pg_target_dsn, [[{"_id": 1, "v": Int64(BIG)}]])
    assert _stored(pg_target_dsn) == ("bigint", {1: str(BIG)})
    _apply(mongo_uri, mongo_db, pg_target_dsn, [[{"_id": 2, "v": 0.1}]])
    assert _stored(pg_target_dsn) == ("numeric", {1: str(BIG), 2: "0.1"})


def test_doubles_then_a_long_in_a_later_group_keeps_every_digit(mongo_uri, mongo_db, pg_target_dsn):
    """Across groups: a long beyond 2^53 sent into the double precision column made for
    doubles turns it numeric (the doubles keep their shortest text) instead of rounding."""
    _apply(mongo_uri, mongo_db, pg_target_dsn, [[{"_id": 1, "v": 0.1}, {"_id": 2, "v": 0.1 + 0.2}]])
    assert _stored(pg_target_dsn)[0] == "double precision"
    _apply(mongo_uri, mongo_db, pg_target_dsn, [[{"_id": 3, "v": Int64(7)}]])
    assert _stored(pg_target_dsn)[0] == "double precision"  # 7 fits a double exactly
    _apply(mongo_uri, mongo_db, pg_target_dsn, [[{"_id": 4, "v": Int64(BIG)}]])
    column, rows = _stored(pg_target_dsn)
    assert column == "numeric"
    assert rows[4] == str(BIG)
    assert rows[1] == "0.1"
    assert rows[2] == "0.30000000000000004"  # 17 digits: a plain cast keeps 15
    assert float(rows[3]) == 7


def test_a_group_carrying_a_long_as_json_makes_a_number_column_json(
    mongo_uri, mongo_db, pg_target_dsn
):
    """A group joining a long beyond 2^53 and a double carries them as JSON numbers; into the
    double precision column an earlier group made they would be parsed as doubles (rounded),
    into a bigint column the fraction would be refused. Either column becomes jsonb, as the
    table a group like it creates has (targets/postgres/jsonpromote.py), every digit kept."""
    for first, kept in ((0.1, 0.1), (Int64(5), {"$numberLong": "5"})):
        _apply(mongo_uri, mongo_db, pg_target_dsn, [[{"_id": 1, "v": first}]])
        _apply(
            mongo_uri,
            mongo_db,
            pg_target_dsn,
            [[{"_id": 2, "v": Int64(BIG)}], [{"_id": 3, "v": 0.5}]],
        )
        column, rows = _stored(pg_target_dsn)
        assert column == "jsonb"
        assert {k: json.loads(v) for k, v in rows.items()} == {1: kept, 2: BIG, 3: 0.5}
        with psycopg.connect(pg_target_dsn, autocommit=True) as conn:
            conn.execute("DROP TABLE things")
