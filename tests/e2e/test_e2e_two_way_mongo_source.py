"""Two-way with the Mongo database as the ``source`` side and Postgres as the ``target``: the
same guarantees as the other way round (each change crosses once, nothing comes back,
conflicts converge), with the forward direction reading the change stream and the reverse
one writing Mongo under its marker."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from bson import Int64
from pymongo import MongoClient

from tests.e2e.harness import CLI, execute, rows
from tests.e2e.test_e2e_two_way import applied, audit
from tests.e2e.test_e2e_two_way_mongo import converge
from tests.e2e.test_e2e_two_way_mongo import mongo as write

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      orders:
        two_way: true
        source:
          type: mongo
          uri: "${MONGO_URI}"
          database: "${MONGO_DB}"
          collections: [items]
        target: {type: postgres, dsn: "${TGT_DSN}"}
        mappings:
          - source: items
            target: public.goods
            fields: {id: _id, title: name, qty: qty, city: address.city}
        conflicts: {CONFLICTS}
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)
SNAPSHOT = "SELECT id, title, qty, city FROM goods ORDER BY id"


def make_cli(tmp_path, uri: str, db: str, tgt: str, conflicts: str) -> CLI:
    config = CONFIG.replace("{CONFLICTS}", conflicts)
    return CLI(tmp_path, config, {"MONGO_URI": uri, "MONGO_DB": db, "TGT_DSN": tgt})


def documents(uri: str, db: str) -> list[tuple[Any, ...]]:
    """The Mongo side as the Postgres rows read: (_id, name, qty, address.city)."""
    with MongoClient(uri) as client:
        found = client[db]["items"].find({}, sort=[("_id", 1)])
        return [
            (d["_id"], d.get("name"), d.get("qty"), (d.get("address") or {}).get("city"))
            for d in found
        ]


@pytest.fixture
def sides(mongo_uri: str, mongo_db: str, pg_target_dsn: str) -> Iterator[tuple[str, str, str]]:
    """20 documents with a field no column takes (``note``), the Postgres table empty."""
    with MongoClient(mongo_uri) as client:
        client[mongo_db].create_collection("items", changeStreamPreAndPostImages={"enabled": True})
        client[mongo_db]["items"].insert_many(
            [
                {"_id": Int64(i), "name": f"n{i}", "qty": i, "address": {"city": "c"}, "note": i}
                for i in range(1, 21)
            ]
        )
    execute(
        pg_target_dsn, "CREATE TABLE goods (id bigint PRIMARY KEY, title text, qty int, city text)"
    )
    yield mongo_uri, mongo_db, pg_target_dsn


def test_each_side_reaches_the_other_once_and_nothing_comes_back(tmp_path, sides):
    uri, db, tgt = sides
    cli = make_cli(tmp_path, uri, db, tgt, "{prefer: source}")
    cli.run("sync", "--once")
    assert rows(tgt, SNAPSHOT) == documents(uri, db) and len(rows(tgt, SNAPSHOT)) == 20
    write(
        uri,
        db,
        ("update_one", {"_id": Int64(1)}, {"$set": {"name": "from mongo", "address.city": "x"}}),
        ("delete_one", {"_id": Int64(2)}, None),
    )
    execute(
        tgt,
        "UPDATE goods SET title = 'from pg', city = 'y' WHERE id = 3",
        "INSERT INTO goods VALUES (99, 't', 9, 'z')",
        "DELETE FROM goods WHERE id = 4",
    )
    first = applied(cli.run("sync", "--once"))
    assert first == {"orders": 2, "orders.reverse": 3}, first
    assert rows(tgt, SNAPSHOT) == documents(uri, db)
    with MongoClient(uri) as client:
        three = client[db]["items"].find_one({"_id": Int64(3)})
        new = client[db]["items"].find_one({"_id": Int64(99)})
    # the reverse writes the mapped fields back, nested paths included, and leaves the
    # field no column takes alone
    assert three == {
        "_id": 3,
        "name": "from pg",
        "qty": 3,
        "address": {"city": "y"},
        "note": 3,
    }
    assert new == {"_id": 99, "name": "t", "qty": 9, "address": {"city": "z"}}
    for _ in range(2):
        again = applied(cli.run("sync", "--once"))
        assert again == {"orders": 0, "orders.reverse": 0}, again
    cli.run("verify", "--pipeline", "orders")


@pytest.mark.parametrize("later", ["source", "target"])
def test_timestamp_last_writer_wins_deletes_included(tmp_path, sides, later):
    uri, db, tgt = sides
    cli = make_cli(tmp_path, uri, db, tgt, "{strategy: timestamp}")
    cli.run("sync", "--once")
    for side in ("target", "source") if later == "source" else ("source", "target"):
        if side == "source":
            write(
                uri,
                db,
                ("update_one", {"_id": Int64(1)}, {"$set": {"name": "src"}}),
                ("delete_one", {"_id": Int64(2)}, None),
                ("update_one", {"_id": Int64(3)}, {"$set": {"name": "src"}}),
            )
        else:
            execute(
                tgt,
                "UPDATE goods SET title = 'tgt' WHERE id IN (1, 2); DELETE FROM goods WHERE id = 3",
            )
        time.sleep(0.05)
    converge(cli)
    assert rows(tgt, SNAPSHOT) == documents(uri, db)
    expected = {"source": [(1, "src"), (3, "src")], "target": [(1, "tgt"), (2, "tgt")]}[later]
    assert rows(tgt, "SELECT id, title FROM goods WHERE id <= 3 ORDER BY id") == expected
    assert {k for _, k, s, _ in audit(cli) if s == "timestamp"}, audit(cli)
