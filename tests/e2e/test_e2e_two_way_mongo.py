"""Two-way Postgres ↔ Mongo through the real CLI: each side's change reaches the other once,
the engine's own Mongo transactions are recognised by their origin marker and never come back,
conflicts converge (``prefer`` and ``timestamp``, deletes included)."""

from __future__ import annotations

import textwrap
import time
from typing import Any

import pytest
from bson import Int64
from pymongo import MongoClient

from tests.e2e.harness import CLI, execute, rows, wait_for
from tests.e2e.test_e2e_two_way import SRC_EDITS, applied, audit

CONFIG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      orders:
        two_way: true
        source:
          type: postgres
          dsn: ${SRC_DSN}
          tables: [public.items]
        target: {type: mongo, uri: "${MONGO_URI}", database: "${MONGO_DB}"}
        mappings:
          - source: public.items
            target: items
            fields: {_id: id, name: name, qty: qty}
        conflicts: {CONFLICTS}
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)
TABLE = "CREATE TABLE items (id bigint PRIMARY KEY, name text, qty int, stamp timestamptz)"
SNAPSHOT = "SELECT id, name, qty FROM items ORDER BY id"


def make_cli(tmp_path, src: str, uri: str, db: str, conflicts: str = "{prefer: source}") -> CLI:
    config = CONFIG.replace("{CONFLICTS}", conflicts)
    return CLI(tmp_path, config, {"SRC_DSN": src, "MONGO_URI": uri, "MONGO_DB": db})


def documents(uri: str, db: str) -> list[tuple[Any, ...]]:
    """The Mongo side as Postgres rows would read: (``_id`` → id, name, qty), by id."""
    with MongoClient(uri) as client:
        found = client[db]["items"].find({}, sort=[("_id", 1)])
        return [(d["_id"], d.get("name"), d.get("qty")) for d in found]


def mongo(uri: str, db: str, *ops: tuple[str, dict[str, Any], dict[str, Any] | None]) -> None:
    """Writes by a person on the Mongo side: (method, filter or document, update). Their
    ``_id``s are Int64, as the engine writes a bigint key."""
    with MongoClient(uri) as client:
        items = client[db]["items"]
        for method, first, second in ops:
            if second is None:
                getattr(items, method)(first)
            else:
                getattr(items, method)(first, second)


@pytest.fixture
def sides(pg_dsn, mongo_uri, mongo_db):
    execute(pg_dsn, TABLE, "INSERT INTO items SELECT i, 'n' || i, i FROM generate_series(1, 50) i")
    return pg_dsn, mongo_uri, mongo_db


def same(src: str, uri: str, db: str) -> bool:
    return rows(src, SNAPSHOT) == documents(uri, db)


def converge(cli: CLI) -> None:
    """Sync until both directions apply nothing (at most a few rounds)."""
    for _ in range(4):
        if applied(cli.run("sync", "--once")) == {"orders": 0, "orders.reverse": 0}:
            return
    raise AssertionError("the directions kept applying changes (ping-pong)")


def test_each_side_reaches_the_other_once_and_nothing_comes_back(tmp_path, sides):
    src, uri, db = sides
    cli = make_cli(tmp_path, src, uri, db)
    cli.run("sync", "--once")
    assert same(src, uri, db)
    execute(
        src, "UPDATE items SET name = 'from source' WHERE id = 1", "DELETE FROM items WHERE id = 2"
    )
    mongo(
        uri,
        db,
        ("update_one", {"_id": Int64(3)}, {"$set": {"name": "from target"}}),
        ("insert_one", {"_id": Int64(99), "name": "t", "qty": 9}, None),
        ("delete_one", {"_id": Int64(4)}, None),
    )
    first = applied(cli.run("sync", "--once"))
    assert first == {"orders": 2, "orders.reverse": 3}, first
    assert same(src, uri, db)
    assert rows(src, "SELECT id, name FROM items WHERE id IN (1, 3, 99) ORDER BY id") == [
        (1, "from source"),
        (3, "from target"),
        (99, "t"),
    ]
    # the engine's Mongo transactions carry its origin's marker, its Postgres ones its
    # replication origin: both readers drop them, nothing echoes
    for _ in range(2):
        again = applied(cli.run("sync", "--once"))
        assert again == {"orders": 0, "orders.reverse": 0}, again
    with MongoClient(uri) as client:
        marker = client[db]["_syncengine_origins"].find_one({"_id": "syncengine_orders"})
    assert marker is not None and marker["transactions"] >= 1
    # verify compares the two sides in both directions, through the mappings
    cli.run("verify", "--pipeline", "orders")
    mongo(uri, db, ("update_one", {"_id": Int64(7)}, {"$set": {"name": "not synced yet"}}))
    assert cli.run("verify", "--pipeline", "orders", check=False).returncode == 1


#: on the Mongo side, the same edits as the Postgres side's TGT_EDITS
MONGO_EDITS = (
    ("update_one", {"_id": Int64(1)}, {"$set": {"name": "tgt"}}),
    ("update_one", {"_id": Int64(2)}, {"$set": {"name": "tgt"}}),
    ("delete_one", {"_id": Int64(3)}, None),
)


def both_edit(src: str, uri: str, db: str, first: str) -> None:
    """ids 1-3 edited on both sides before either is synced, ``first`` side first (so its
    write is the older): 1 updated on both, 2 deleted at the source and updated in Mongo, 3
    the reverse."""
    for side in (first, "target" if first == "source" else "source"):
        if side == "source":
            execute(src, SRC_EDITS)
        else:
            mongo(uri, db, *MONGO_EDITS)
        time.sleep(0.05)  # distinct times (Mongo's are milliseconds)


@pytest.mark.parametrize("first", ["orders", "orders.reverse"])
@pytest.mark.parametrize("later", ["source", "target"])
def test_timestamp_last_writer_wins_deletes_included(tmp_path, sides, later, first):
    src, uri, db = sides
    cli = make_cli(tmp_path, src, uri, db, "{strategy: timestamp}")
    cli.run("sync", "--once")
    both_edit(src, uri, db, "target" if later == "source" else "source")
    cli.run("sync", "--once", "--pipeline", first)  # either direction may meet them first
    converge(cli)
    import os

    if os.environ.get("TWDEBUG"):
        print("AUDIT", audit(cli))
        print("PG", rows(src, "SELECT * FROM items WHERE id <= 3 ORDER BY id"))
        print("PGV", rows(src, "SELECT * FROM _syncengine.versions ORDER BY row_key"))
        with MongoClient(uri) as c:
            print("MV", list(c[db]["_syncengine_versions"].find()))
        for log in cli.logs:
            print("LOG", log[-3000:])
    assert rows(src, SNAPSHOT) == documents(uri, db)
    assert rows(src, "SELECT name FROM items WHERE id = 1") == [
        ("src" if later == "source" else "tgt",)
    ]
    expected = {"source": [(3, "src")], "target": [(2, "tgt")]}[later]
    assert rows(src, "SELECT id, name FROM items WHERE id IN (2, 3) ORDER BY id") == expected
    decided = {k for _, k, s, _ in audit(cli) if s == "timestamp"}
    assert decided, audit(cli)


@pytest.mark.parametrize("prefer", ["source", "target"])
def test_prefer_side_wins_every_conflict_in_both_directions(tmp_path, sides, prefer):
    src, uri, db = sides
    cli = make_cli(tmp_path, src, uri, db, f"{{prefer: {prefer}}}")
    cli.run("sync", "--once")
    both_edit(src, uri, db, prefer)  # the preferred side's older edits still win
    converge(cli)
    assert rows(src, SNAPSHOT) == documents(uri, db)
    expected = {
        "source": [(1, "src"), (3, "src")],  # the source's delete of 2 wins too
        "target": [(1, "tgt"), (2, "tgt")],
    }[prefer]
    assert rows(src, "SELECT id, name FROM items WHERE id <= 3 ORDER BY id") == expected
    outcomes = {(d, k): o for d, k, _, o in audit(cli)}
    assert ("orders", '{"_id":1}') in outcomes, outcomes


@pytest.mark.parametrize("later", ["source", "target"])
def test_merge_combines_fields_and_settles_a_clash_by_commit_time(tmp_path, sides, later):
    """id 1: Postgres changes name, Mongo qty (both kept); id 4: both change name (the later
    write wins); ids 2 and 3: an update against a delete (the later write wins)."""
    src, uri, db = sides
    cli = make_cli(tmp_path, src, uri, db, "{strategy: merge}")
    cli.run("sync", "--once")
    for side in ("target", "source") if later == "source" else ("source", "target"):
        if side == "source":
            execute(
                src,
                "UPDATE items SET name = 'src' WHERE id IN (1, 4); DELETE FROM items WHERE id = 2; "
                "UPDATE items SET name = 'src' WHERE id = 3",
            )
        else:
            mongo(
                uri,
                db,
                ("update_one", {"_id": Int64(1)}, {"$set": {"qty": 100}}),
                ("update_one", {"_id": Int64(4)}, {"$set": {"name": "tgt"}}),
                ("update_one", {"_id": Int64(2)}, {"$set": {"name": "tgt"}}),
                ("delete_one", {"_id": Int64(3)}, None),
            )
        time.sleep(0.05)  # distinct times (Mongo's are milliseconds)
    converge(cli)
    assert same(src, uri, db)
    side = "src" if later == "source" else "tgt"
    expected = [(1, "src", 100)] + ([(3, "src", 3)] if later == "source" else [(2, "tgt", 2)])
    assert rows(src, "SELECT id, name, qty FROM items WHERE id <= 3 ORDER BY id") == expected
    assert rows(src, "SELECT name FROM items WHERE id = 4") == [(side,)]
    outcomes = {(k, o) for _, k, s, o in audit(cli) if s == "merge"}
    assert ('{"_id":1}', "merged") in outcomes or ('{"id":1}', "merged") in outcomes, audit(cli)


def test_daemon_runs_both_directions(tmp_path, sides):
    src, uri, db = sides
    cli = make_cli(tmp_path, src, uri, db)
    daemon = cli.start("run")
    try:
        wait_for(lambda: same(src, uri, db), timeout=90)
        execute(src, "UPDATE items SET name = 'live src' WHERE id = 5")
        mongo(uri, db, ("update_one", {"_id": Int64(6)}, {"$set": {"name": "live tgt"}}))
        try:
            wait_for(
                lambda: (
                    same(src, uri, db)
                    and rows(src, "SELECT name FROM items WHERE id IN (5, 6) ORDER BY id")
                    == [("live src",), ("live tgt",)]
                ),
                timeout=30,
            )
        except AssertionError as missing:
            sides_now = (rows(src, SNAPSHOT), documents(uri, db))
            raise AssertionError(f"{sides_now}\n{cli.daemon_logs()[-6000:]}") from missing
    finally:
        assert cli.stop(daemon) == 0
    assert applied(cli.run("sync", "--once")) == {"orders": 0, "orders.reverse": 0}


def test_a_batch_of_mongo_deletes_alone_crosses(tmp_path, sides):
    """A change-stream batch of nothing but deletes names only ``_id``: the other mapped
    columns reach the Postgres target untyped, and the read-back of the rows they delete
    (``prefer: source`` reads the target) must still type them as the table does."""
    src, uri, db = sides
    cli = make_cli(tmp_path, src, uri, db)
    cli.run("sync", "--once")
    mongo(uri, db, ("delete_one", {"_id": Int64(5)}, None), ("delete_one", {"_id": Int64(6)}, None))
    assert applied(cli.run("sync", "--once")) == {"orders": 0, "orders.reverse": 2}
    assert rows(src, "SELECT id FROM items WHERE id IN (5, 6)") == []
    assert same(src, uri, db)
