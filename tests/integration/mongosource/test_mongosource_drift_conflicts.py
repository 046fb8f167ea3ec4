"""A Mongo field that flips between int and double from one group to the next (a Node.js
driver writes 5 as an int and 5.5 as a double) is no conflict for a strategy that reads the
target back: the target row read under the new batch's type is the row the pipeline wrote.
Before, it read as changed (0.1 read back under an int type as 0, or 5 hashed unlike 5.0), so
``local`` dropped the source's update and ``manual`` parked it, though nobody had touched the
target."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import psycopg
import pytest
from bson import Int64
from pymongo import MongoClient

from syncengine.codecs.bson_arrow import decode_documents
from syncengine.config.models import PipelineConfig
from syncengine.runtime.pipeline import Pipeline
from syncengine.sources.mongo.batches import snapshot_batch
from syncengine.state import SQLiteStateStore
from tests.integration.pgcolumns import stored_column

TS = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class Groups:
    """One pipeline's groups, each applied by a fresh process of it (same state store)."""

    def __init__(
        self,
        mongo_uri: str,
        mongo_db: str,
        dsn: str,
        strategy: str,
        state: str,
        target: dict | None = None,
    ):
        self.config = PipelineConfig.model_validate(
            {
                "source": {"type": "mongo", "uri": mongo_uri, "database": mongo_db,
                           "collections": ["things"]},
                "target": target or {"type": "postgres", "dsn": dsn},
                "conflicts": {"strategy": strategy},
            }
        )  # fmt: skip
        self.state = state
        self.dsn = dsn
        self.n = 0

    def apply(self, docs: list[dict]) -> int:
        """Apply one group of ``docs`` (as changes read at a later position); its conflicts."""
        self.n += 1

        async def run() -> int:
            pipeline = Pipeline("drift", self.config, SQLiteStateStore(self.state))
            await pipeline.open()
            try:
                batch = snapshot_batch("things", decode_documents(docs), f"{self.n:04d}", TS, {})
                report = await pipeline.process([batch], None)
            finally:
                await pipeline.close()
            return report.conflicts

        return asyncio.run(run())

    def stored(self) -> dict[int, tuple[str, str]]:
        _, v = stored_column(self.dsn, "things", "v", "_id")
        _, w = stored_column(self.dsn, "things", "w", "_id")
        return {k: (v[k], w[k]) for k in v}


@pytest.fixture
def groups(mongo_uri, mongo_db, pg_target_dsn, tmp_path, request):
    return Groups(mongo_uri, mongo_db, pg_target_dsn, request.param, str(tmp_path / "state.db"))


@pytest.mark.parametrize("groups", ["local", "manual"], indirect=True)
@pytest.mark.parametrize(
    ("first", "then"),
    [
        (0.1, Int64(5)),  # a double column holding 0.1, read under an int type
        (5.0, Int64(6)),  # 5.0 written from a double batch, read back under an int type
        (Int64(5), 5.5),  # a bigint column widened to double precision
        (5, 6),  # no drift: the control
    ],
)
def test_a_field_changing_between_int_and_double_is_no_conflict(groups, first, then):
    assert groups.apply([{"_id": 1, "v": first, "w": "a"}, {"_id": 2, "v": first, "w": "a"}]) == 0
    assert groups.apply([{"_id": 1, "v": then, "w": "b"}]) == 0
    stored = groups.stored()
    assert float(stored[1][0]) == float(then)
    assert stored[1][1] == "b"


@pytest.mark.parametrize("groups", ["local"], indirect=True)
def test_a_row_edited_at_the_target_is_still_a_conflict_across_the_drift(groups):
    groups.apply([{"_id": 1, "v": 0.1, "w": "a"}])
    with psycopg.connect(groups.dsn, autocommit=True) as conn:
        conn.execute("UPDATE things SET w = 'edited' WHERE _id = 1")
    assert groups.apply([{"_id": 1, "v": Int64(5), "w": "b"}]) == 1
    assert groups.stored()[1] == ("0.1", "edited")  # local wins


@pytest.mark.parametrize("groups", ["local"], indirect=True)
@pytest.mark.parametrize(
    ("first", "then"),
    [
        (0.5, Int64(5)),  # a jsonb 0.5, read under the batch's int member: 0 (Arrow truncates)
        (5.0, Int64(6)),
        (Int64(5), 5.5),
        ([1, 2.5], [1.0, 3]),  # an array's items
    ],
)
def test_a_sub_documents_number_changing_between_int_and_double_is_no_conflict(groups, first, then):
    assert groups.apply([{"_id": 1, "v": {"a": first}, "w": "a"}]) == 0
    assert groups.apply([{"_id": 1, "v": {"a": then}, "w": "b"}]) == 0
    value, w = groups.stored()[1]
    assert json.loads(value) == {"a": then}
    assert w == "b"


@pytest.mark.parametrize("strategy", ["local", "manual"])
@pytest.mark.parametrize(
    ("first", "then"),
    [
        (0.5, Int64(5)),
        (5.0, Int64(6)),
        (Int64(5), 5.5),
        ({"a": 0.5}, {"a": Int64(5)}),
    ],
)
def test_into_mongo_the_drift_is_no_conflict_and_the_sources_types_are_kept(
    mongo_uri, mongo_db, tmp_path, strategy, first, then
):
    """Mongo → Mongo: the document read back holds a double where the batch has an int; the
    change is applied, as the source typed it (an int stays an int, not 5.0)."""
    into = mongo_db + "_into"
    target = {"type": "mongo", "uri": mongo_uri, "database": into}
    groups = Groups(mongo_uri, mongo_db, "", strategy, str(tmp_path / "state.db"), target)
    assert groups.apply([{"_id": 1, "v": first, "w": "a"}]) == 0
    assert groups.apply([{"_id": 1, "v": then, "w": "b"}]) == 0
    with MongoClient(mongo_uri) as client:
        stored = client[into]["things"].find_one({"_id": 1}, {"_id": 0})
        client.drop_database(into)
    assert stored == {"v": then, "w": "b"}
    leaf = (lambda v: v["a"]) if isinstance(then, dict) else (lambda v: v)
    assert type(leaf(stored["v"])) is type(leaf(then))  # a long stays a long
