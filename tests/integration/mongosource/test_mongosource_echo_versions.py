"""Two-way echoes restated from a Mongo source (runtime/restate.py): the document a key holds
and the version its sibling recorded for it are one state of the key, even when the sibling
commits its next write of that key between the two reads (the Mongo counterpart of
``tests/integration/pgsource/test_pgsource_echo_versions.py``)."""

from __future__ import annotations

import asyncio
import datetime as dt
from types import SimpleNamespace

import pyarrow as pa
from pymongo import MongoClient

from syncengine.changes import ECHO, ChangeBatch
from syncengine.config.twoway import versions_name
from syncengine.runtime import restate
from syncengine.targets.mongo import versions
from tests.integration.mongosource.mongosource_helpers import make_source

#: the direction restating echoes, and its sibling (whose writes into this source they are)
DIRECTION, SIBLING = "echosnap.reverse", "echosnap"
T1 = dt.datetime(2026, 1, 1, 0, 0, 1, tzinfo=dt.UTC)
T2 = T1 + dt.timedelta(microseconds=1)
ROW_KEY = '{"_id":1}'


def sibling_writes(uri: str, database: str, name: str, qty: int, ts: dt.datetime) -> None:
    """The sibling's apply: document 1 and its recorded version in one transaction."""
    recorded = pa.table(
        {
            "row_key": [ROW_KEY],
            "ts": pa.array([ts], pa.timestamp("us", tz="UTC")),
            "side": ["remote"],
            "deleted": [False],
        }
    )
    with MongoClient(uri) as client, client.start_session() as session:
        db = client[database]

        def write(s: object) -> None:
            db["items"].replace_one(
                {"_id": 1}, {"_id": 1, "name": name, "qty": qty}, upsert=True, session=s
            )
            ops = versions.operations(versions_name(SIBLING), "items", recorded)
            db[versions.VERSIONS].bulk_write(ops, session=s)

        session.with_transaction(write)


def echo_of_document_1() -> ChangeBatch:
    rows = pa.table({"_id": pa.array([1], pa.int64()), "name": ["first"], "qty": [6]})
    return ChangeBatch.build(
        "items", rows, ops=["u"], positions=["0000000000000001"], ts=[T1],
        key=["_id"], meta={ECHO: True},
    )  # fmt: skip


def restated(source) -> list[dict[str, object]]:
    pipeline = SimpleNamespace(source=source, name=DIRECTION)

    async def scenario() -> list[ChangeBatch]:
        try:
            return await restate.versioned_echoes(pipeline, [echo_of_document_1()])  # type: ignore[arg-type]
        finally:
            await source.close()

    (batch,) = asyncio.run(scenario())
    return batch.data.to_pylist()


def test_an_echo_pairs_the_document_with_its_own_version_when_the_sibling_writes_between(
    mongo_uri, mongo_db, tmp_path
):
    sibling_writes(mongo_uri, mongo_db, "first", 6, T1)
    source = make_source(mongo_uri, mongo_db, tmp_path, ["items"])
    read_rows = source.current_rows

    async def rows_then_the_sibling_writes(*args: object) -> pa.Table:
        """The real read; then, before the versions are read, the sibling's next write of
        the key commits (on its own connection)."""
        found = await read_rows(*args)  # type: ignore[arg-type]
        sibling_writes(mongo_uri, mongo_db, "second", 7, T2)
        return found

    source.current_rows = rows_then_the_sibling_writes  # type: ignore[method-assign]
    echo = restated(source)
    # the document read and the version read are one state: the first write, at its own
    # time (read apart: 'first' with the second write's time)
    assert [(r["name"], r["qty"], r["_ts"]) for r in echo] == [("first", 6, T1)]
    # and the sibling's write is there for the next read
    again = restated(make_source(mongo_uri, mongo_db, tmp_path, ["items"]))
    assert [(r["name"], r["qty"], r["_ts"]) for r in again] == [("second", 7, T2)]
