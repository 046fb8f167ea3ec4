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


# -- inserts where the _id is absent, upserts where it turns out to exist ------------------

ITEMS = pa.schema([("id", pa.int64()), ("v", pa.string())])
ITEMS_SPEC = TableSpec("items", ("id",), ITEMS)


def items(ops: list[str], ids: list[int], v: str, first: int = 1) -> TableWrite:
    rows = [{"id": i, "v": f"{v}{i}"} for i in ids]
    positions = [f"{first + n:04d}" for n in range(len(ids))]
    batch = make_batch("items", ("id",), rows, ITEMS, ops, positions)
    keys = row_keys(batch.to_polars(), ["id"]).to_arrow()
    upserts = pa.table(
        {
            "row_key": keys,
            "row_hash": pa.array([f"h{v}{i}" for i in ids]),
            "base": pa.nulls(len(ids), pa.string()),
            "position": pa.array(positions),
            "fresh": pa.array([op in ("r", "c") for op in ops]),
        }
    )
    return TableWrite(ITEMS_SPEC, batch, ShadowUpdate(upserts))


def mongo_items(uri: str, db: str) -> tuple[dict[int, str], dict[str, str]]:
    with MongoClient(uri) as client:
        docs = {d["_id"]: d["v"] for d in client[db]["items"].find({})}
        shadow = {d["k"]: d["row_hash"] for d in client[db]["_syncengine_shadow"].find({})}
    return docs, shadow


@pytest.mark.parametrize("transactions", [None, False])
def test_replayed_and_overlapping_snapshot_chunks_upsert(
    mongo_uri, mongo_db, tmp_path, transactions
) -> None:
    """Snapshot rows go in as inserts; a chunk that meets its own documents (a resumed or
    repeated backfill) replaces them: no row lost, none duplicated, the shadow follows."""

    async def scenario() -> list[int]:
        t = make(mongo_uri, mongo_db, tmp_path, transactions)
        await t.open()
        await t.ensure_table(ITEMS_SPEC)
        counts = []
        for write in (
            items(["r"] * 3, [1, 2, 3], "a"),
            items(["r"] * 3, [1, 2, 3], "b"),  # the same chunk again, newer values
            items(["r"] * 4, [3, 4, 5, 6], "c"),  # overlaps one existing key
        ):
            counts.append((await t.apply([write], Checkpoint("s", "1"))).upserted)
        await t.close()
        return counts

    counts = run(scenario())
    docs, shadow = mongo_items(mongo_uri, mongo_db)
    assert docs == {1: "b1", 2: "b2", 3: "c3", 4: "c4", 5: "c5", 6: "c6"}
    assert counts[0] == 3 and counts[2] == 4
    if transactions is None:
        assert shadow == {
            '{"id":1}': "hb1",
            '{"id":2}': "hb2",
            '{"id":3}': "hc3",
            '{"id":4}': "hc4",
            '{"id":5}': "hc5",
            '{"id":6}': "hc6",
        }


@pytest.mark.parametrize("transactions", [None, False])
def test_stream_inserts_over_existing_documents_replace_them(
    mongo_uri, mongo_db, tmp_path, transactions
) -> None:
    """A ``c`` can meet a document (a delete + insert compacted into one insert, a replay):
    it replaces it; a ``c`` of a new key is inserted."""
    with MongoClient(mongo_uri) as client:
        client[mongo_db]["items"].insert_one({"_id": 1, "id": 1, "v": "old", "extra": True})

    async def scenario() -> None:
        t = make(mongo_uri, mongo_db, tmp_path, transactions)
        await t.open()
        await t.ensure_table(ITEMS_SPEC)
        await t.apply([items(["c", "c"], [1, 2], "n")], None)
        await t.apply([items(["c", "u", "d"], [3, 2, 1], "m")], None)
        await t.close()

    run(scenario())
    with MongoClient(mongo_uri) as client:
        docs = list(client[mongo_db]["items"].find({}, sort=[("_id", 1)]))
    assert docs == [{"_id": 2, "id": 2, "v": "m2"}, {"_id": 3, "id": 3, "v": "m3"}]


@pytest.mark.parametrize("transactions", [None, False])
def test_snapshot_row_refused_by_a_unique_index_is_rejected(
    mongo_uri, mongo_db, tmp_path, transactions
) -> None:
    """A duplicate on another unique index is the row's fault, not a replay: rejected."""
    with MongoClient(mongo_uri) as client:
        client[mongo_db]["items"].create_index("v", unique=True)
        client[mongo_db]["items"].insert_one({"_id": 9, "id": 9, "v": "r2"})

    async def scenario():
        t = make(mongo_uri, mongo_db, tmp_path, transactions)
        await t.open()
        await t.ensure_table(ITEMS_SPEC)
        result = await t.apply([items(["r"] * 3, [1, 2, 3], "r")], Checkpoint("s", "3"))
        await t.close()
        return result

    result = run(scenario())
    assert [r[1]["id"] for r in result.rejected] == [2]
    docs, shadow = mongo_items(mongo_uri, mongo_db)
    assert docs == {1: "r1", 3: "r3", 9: "r2"}
    if transactions is None:
        assert set(shadow) == {'{"id":1}', '{"id":3}'}


def test_json_columns_read_back_as_text_and_lookups_are_chunked(
    mongo_uri, mongo_db, tmp_path, monkeypatch
) -> None:
    """A jsonb column is stored as a sub-document and read back as its JSON text; key lookups
    of any batch size are split into bounded ``$in`` queries."""
    import json

    from syncengine.targets.mongo import fresh

    monkeypatch.setattr(fresh, "IN_CHUNK", 7)
    schema = pa.schema(
        [("id", pa.int64()), pa.field("doc", pa.large_string(), metadata={"pg_type": "jsonb"})]
    )
    spec = TableSpec("docs", ("id",), schema)
    values = ['{"a": 1, "b": [1, 2]}', '"text"', "[]", None, '{"n": {"m": null}}']
    rows = [{"id": i, "doc": values[i % len(values)]} for i in range(30)]

    async def scenario() -> pa.Table:
        t = make(mongo_uri, mongo_db, tmp_path)
        await t.open()
        await t.ensure_table(spec)
        batch = make_batch(
            "docs", ("id",), rows, schema, ["c"] * 30, [f"{i:03d}" for i in range(30)]
        )
        await t.apply([TableWrite(spec, batch)], None)
        found = await t.read_rows(spec, pa.table({"id": pa.array(range(-5, 30), pa.int64())}))
        await t.close()
        return found

    found = run(scenario())
    assert found.num_rows == 30
    back = {r["id"]: r["doc"] for r in found.to_pylist()}
    for row in rows:
        want = row["doc"]
        assert (
            (back[row["id"]] is None)
            if want is None
            else json.loads(back[row["id"]]) == json.loads(want)
        )


def test_tombstones_behind_the_checkpoint_are_purged(
    mongo_uri, mongo_db, tmp_path, monkeypatch
) -> None:
    """Tombstones (null hash) the committed checkpoint has passed are deleted; newer ones and
    live shadow rows stay."""
    from syncengine.targets import shadow

    monkeypatch.setattr(shadow, "PURGE_EVERY", 2)
    upserts = pa.table(
        {
            "row_key": ["[1]", "[2]", "[3]"],
            "row_hash": ["h1", None, None],
            "base": pa.nulls(3, pa.string()),
            "position": ["0001", "0002", "0009"],
        }
    )

    async def scenario() -> list[str]:
        t = make(mongo_uri, mongo_db, tmp_path)
        await t.open()
        spec = await t.ensure_table(ITEMS_SPEC)
        none = make_batch("items", ("id",), [], ITEMS, [], [])
        await t.apply([TableWrite(spec, none, ShadowUpdate(upserts))], Checkpoint("s", "0003"))
        kept = await t.read_shadow("items", ["[1]", "[2]", "[3]"])
        await t.apply([], Checkpoint("s", "0005"))  # the second checkpoint purges
        found = await t.read_shadow("items", ["[1]", "[2]", "[3]"])
        await t.close()
        assert kept.num_rows == 3
        return sorted(found["row_key"].to_pylist())

    assert run(scenario()) == ["[1]", "[3]"]
    with MongoClient(mongo_uri) as client:
        indexes = client[mongo_db]["_syncengine_shadow"].index_information()
    assert "syncengine_tombstones" in indexes


@pytest.mark.parametrize("when", ["before", "refused"])
def test_a_group_too_large_for_one_transaction_is_applied_in_halves(
    mongo_uri, mongo_db, tmp_path, caplog, monkeypatch, when
) -> None:
    """120 rows of 1 MB: split before trying (above TRANSACTION_BYTES), or, with that bound
    lifted, once the server refuses the transaction (TransactionTooLargeForCache on the test
    server's 1 GB cache). Without halving the same group would fail forever."""
    if when == "refused":
        monkeypatch.setattr("syncengine.targets.mongo.split.TRANSACTION_BYTES", 1 << 40)
    big = "x" * (1 << 20)
    ids = list(range(1, 121))

    async def scenario() -> tuple[int, str | None]:
        t = make(mongo_uri, mongo_db, tmp_path)
        await t.open()
        result = await t.apply([items(["c"] * len(ids), ids, big)], Checkpoint("s", "0120"))
        found = result.upserted, await t.get_checkpoint("s")
        await t.close()
        return found

    caplog.set_level("INFO", logger="syncengine.targets.mongo")
    assert run(scenario()) == (120, "0120")
    refused = "too large for one transaction" in caplog.text
    assert refused == (when == "refused")
    docs, shadow = mongo_items(mongo_uri, mongo_db)
    assert docs == {i: f"{big}{i}" for i in ids}
    assert len(shadow) == 120


def bare_items(ids: list[int], v: str) -> TableWrite:
    """Snapshot rows with no state to write (``remote`` on an exported snapshot)."""
    rows = [{"id": i, "v": f"{v}{i}"} for i in ids]
    batch = make_batch("items", ("id",), rows, ITEMS, ["r"] * len(ids), ["0001"] * len(ids))
    return TableWrite(ITEMS_SPEC, batch)


def test_snapshot_rows_without_state_go_in_slices_outside_a_transaction(
    mongo_uri, mongo_db, tmp_path, monkeypatch
) -> None:
    """A pure snapshot group (no shadow, no checkpoint) is inserted in slices, several in
    flight, without a session: replaying it (a resumed chunk, newer values) leaves each
    document once with the replayed values, and a row refused for its content is rejected
    while the rest of its slice goes in."""
    from pymongo.asynchronous.client_session import AsyncClientSession

    from syncengine.targets.mongo import inserts

    monkeypatch.setattr(inserts, "SLICE_ROWS", 7)
    sessions: list[object] = []
    original = AsyncClientSession.with_transaction

    async def counted(self, *args, **kwargs):
        sessions.append(self)
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(AsyncClientSession, "with_transaction", counted)
    with MongoClient(mongo_uri) as client:
        client[mongo_db]["items"].create_index("v", unique=True)
        client[mongo_db]["items"].insert_one({"_id": 99, "id": 99, "v": "a12"})

    async def scenario():
        t = make(mongo_uri, mongo_db, tmp_path)
        await t.open()
        await t.ensure_table(ITEMS_SPEC)
        first = await t.apply([bare_items(list(range(30)), "a")], None)
        again = await t.apply([bare_items(list(range(20, 40)), "b")], None)
        await t.close()
        return first, again

    first, again = run(scenario())
    assert sessions == []  # no transaction for a pure snapshot group
    assert [r[1]["id"] for r in first.rejected] == [12] and not again.rejected
    assert first.upserted == 29 and again.upserted == 20
    docs, shadow = mongo_items(mongo_uri, mongo_db)
    expected = {i: f"a{i}" for i in range(20) if i != 12}
    expected.update({i: f"b{i}" for i in range(20, 40)})
    expected[99] = "a12"
    assert docs == expected and shadow == {}
    assert inserts.pure_snapshot([bare_items([1], "x")], None)
    assert not inserts.pure_snapshot([bare_items([1], "x")], Checkpoint("s", "1"))
    assert not inserts.pure_snapshot([items(["r"], [1], "x")], None)  # has shadow rows


@pytest.mark.parametrize(("option", "expected"), [("", {"w": "majority"}), ("w=1", {"w": 1})])
def test_writes_wait_for_a_majority_unless_the_uri_says(
    mongo_uri, mongo_db, tmp_path, option, expected
) -> None:
    """A write only the primary holds is rolled back by a failover after the engine moved the
    source on; the cluster's default may be ``w: 1``. A ``w`` in the URI is the user's."""
    uri = f"{mongo_uri}{'&' if '?' in mongo_uri else '/?'}{option}" if option else mongo_uri
    spec = TableSpec("orders", ("region", "num"), SCHEMA)
    rows = [{"region": "eu", "num": 1, "customer.email": "a@x", "v": "one"}]

    async def scenario() -> dict:
        t = make(uri, mongo_db, tmp_path)
        await t.open()
        try:
            await t.ensure_table(spec)
            batch = make_batch("orders", spec.key, rows, SCHEMA, ["c"], ["1"])
            await t.apply([TableWrite(spec, batch)], Checkpoint("s", "1"))
            return t._client.write_concern.document
        finally:
            await t.close()

    assert run(scenario()) == expected
    with MongoClient(mongo_uri) as client:
        assert client[mongo_db]["orders"].count_documents({}) == 1
