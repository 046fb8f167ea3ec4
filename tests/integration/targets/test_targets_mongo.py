"""Mongo target specifics: _id rules, nested fields, transactions detection, rejected writes."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from pymongo import MongoClient

from syncengine.config.models import MongoTargetConfig
from syncengine.conflicts.rows import row_keys
from syncengine.state.sqlite import SQLiteStateStore
from syncengine.targets.base import Checkpoint, ShadowUpdate, TableSpec, TableWrite
from syncengine.targets.mongo import MongoTarget
from tests.integration.targets.conftest import make_batch, run

SCHEMA = pa.schema(
    [
        ("region", pa.string()),
        ("num", pa.int64()),
        ("customer.email", pa.string()),
        ("v", pa.string()),
    ]
)


def make(uri: str, db: str, tmp_path: Path, transactions: bool | None = None) -> MongoTarget:
    config = MongoTargetConfig(type="mongo", uri=uri, database=db)
    return MongoTarget("p", config, SQLiteStateStore(tmp_path / "s.db"), transactions=transactions)


def test_composite_key_becomes_id_and_dotted_columns_nest(mongo_uri, mongo_db, tmp_path) -> None:
    spec = TableSpec("orders", ("region", "num"), SCHEMA)
    rows = [{"region": "eu", "num": 1, "customer.email": "a@x", "v": "one"}]

    async def scenario() -> None:
        t = make(mongo_uri, mongo_db, tmp_path)
        await t.open()
        await t.ensure_table(spec)
        await t.apply(
            [TableWrite(spec, make_batch("orders", spec.key, rows, SCHEMA, ["c"], ["1"]))], None
        )
        update = make_batch(
            "orders",
            spec.key,
            [{"region": "eu", "num": 1, "customer.email": "b@x", "v": None}],
            SCHEMA,
            ["u"],
            ["2"],
            unsent={"v": [True]},
        )
        await t.apply([TableWrite(spec, update)], None)
        await t.close()

    run(scenario())
    with MongoClient(mongo_uri) as client:
        docs = list(client[mongo_db]["orders"].find({}))
    assert docs == [
        {
            "_id": {"region": "eu", "num": 1},
            "region": "eu",
            "num": 1,
            "customer": {"email": "b@x"},
            "v": "one",
        }
    ]


def test_transactions_are_detected_and_hold_the_state(mongo_uri, mongo_db, tmp_path) -> None:
    spec = TableSpec("items", ("region",), pa.schema([("region", pa.string())]))
    batch = make_batch("items", ("region",), [{"region": "eu"}], spec.schema, ["c"], ["9"])

    async def scenario(transactions: bool | None) -> tuple[bool, str | None]:
        t = make(mongo_uri, mongo_db, tmp_path, transactions)
        await t.open()
        await t.apply(
            [TableWrite(spec, batch)], Checkpoint("s", "9" if transactions is None else "8")
        )
        found = t.keeps_state, await t.get_checkpoint("s")
        await t.close()
        return found

    assert run(scenario(None)) == (True, "9")  # the test server is a replica set
    assert run(scenario(False)) == (False, "8")
    with MongoClient(mongo_uri) as client:
        stored = client[mongo_db]["_syncengine_checkpoints"].find_one()
    assert stored["position"] == "9"
    assert SQLiteStateStore(tmp_path / "s.db").get_checkpoint("p", "s").position == "8"


@pytest.mark.parametrize("transactions", [None, False])
def test_refused_writes_are_rejected_the_rest_applies(
    mongo_uri, mongo_db, tmp_path, transactions
) -> None:
    schema = pa.schema([("id", pa.int64()), ("email", pa.string())])
    spec = TableSpec("users", ("id",), schema)
    with MongoClient(mongo_uri) as client:
        client[mongo_db]["users"].create_index("email", unique=True)
    rows = [{"id": i, "email": e} for i, e in [(1, "a"), (2, "b"), (3, "a"), (4, "c")]]

    async def scenario():
        t = make(mongo_uri, mongo_db, tmp_path, transactions)
        await t.open()
        batch = make_batch("users", ("id",), rows, schema, ["c"] * 4, ["1", "2", "3", "4"])
        keys = row_keys(batch.to_polars(), ["id"]).to_arrow()
        shadow = ShadowUpdate(pa.table({"row_key": keys, "row_hash": keys}))
        result = await t.apply([TableWrite(spec, batch, shadow)], Checkpoint("s", "4"))
        checkpoint = await t.get_checkpoint("s")
        found = (await t.read_shadow("users", keys.to_pylist()))["row_key"].to_pylist()
        await t.close()
        return result, checkpoint, sorted(found)

    result, checkpoint, shadow_keys = run(scenario())
    assert shadow_keys == ['{"id":1}', '{"id":2}', '{"id":4}']  # the refused row gets no shadow
    assert [r[1]["id"] for r in result.rejected] == [3]
    assert "duplicate" in result.rejected[0][2].lower() or "E11000" in result.rejected[0][2]
    assert checkpoint == "4"
    with MongoClient(mongo_uri) as client:
        ids = sorted(d["_id"] for d in client[mongo_db]["users"].find({}))
    assert ids == [1, 2, 4]
