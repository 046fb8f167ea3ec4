"""Two-way Mongo ↔ Mongo through the real CLI: two databases, whole documents copied both
ways; each side's change reaches the other once, each direction's marked transactions are
echoes for the other's stream, conflicts converge (``prefer``, ``timestamp``, ``merge``)."""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from bson import Int64
from pymongo import MongoClient

from tests.e2e.harness import CLI, wait_for
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
          database: "${SRC_DB}"
          collections: [items]
        target: {type: mongo, uri: "${MONGO_URI}", database: "${TGT_DB}"}
        conflicts: {CONFLICTS}
        batch: {max_rows: 1000, max_wait: 100ms}
    """
)
Op = tuple[str, dict[str, Any], dict[str, Any] | None]


def make_cli(tmp_path, uri: str, src: str, tgt: str, conflicts: str = "{prefer: source}") -> CLI:
    config = CONFIG.replace("{CONFLICTS}", conflicts)
    return CLI(tmp_path, config, {"MONGO_URI": uri, "SRC_DB": src, "TGT_DB": tgt})


def documents(uri: str, db: str) -> list[dict[str, Any]]:
    with MongoClient(uri) as client:
        return list(client[db]["items"].find({}, sort=[("_id", 1)]))


@pytest.fixture
def sides(mongo_uri: str, mongo_db: str) -> Iterator[tuple[str, str, str]]:
    """50 documents in the source database (a collection with pre-images, which a two-way
    Mongo side needs), a second database on the same server as the target."""
    target = f"db_{uuid.uuid4().hex[:10]}"
    with MongoClient(mongo_uri) as client:
        client[mongo_db].create_collection("items", changeStreamPreAndPostImages={"enabled": True})
        client[mongo_db]["items"].insert_many(
            [{"_id": Int64(i), "name": f"n{i}", "qty": i, "tags": {"a": i}} for i in range(1, 51)]
        )
    yield mongo_uri, mongo_db, target
    with MongoClient(mongo_uri) as client:
        client.drop_database(target)


def same(uri: str, src: str, tgt: str) -> bool:
    return documents(uri, src) == documents(uri, tgt)


#: a document inserted on the target side, with a field the others lack
NEW = {"_id": Int64(99), "name": "t", "qty": 9, "tags": {"a": 7}, "list": [1, {"b": 2}]}


def test_each_side_reaches_the_other_once_and_nothing_comes_back(tmp_path, sides):
    uri, src, tgt = sides
    cli = make_cli(tmp_path, uri, src, tgt)
    cli.run("sync", "--once")
    assert same(uri, src, tgt) and len(documents(uri, tgt)) == 50
    write(
        uri,
        src,
        ("update_one", {"_id": Int64(1)}, {"$set": {"name": "from source", "tags.a": -1}}),
        ("delete_one", {"_id": Int64(2)}, None),
    )
    write(
        uri,
        tgt,
        ("update_one", {"_id": Int64(3)}, {"$set": {"name": "from target"}}),
        ("insert_one", NEW, None),
        ("delete_one", {"_id": Int64(4)}, None),
    )
    first = applied(cli.run("sync", "--once"))
    assert first == {"orders": 2, "orders.reverse": 3}, first
    assert same(uri, src, tgt)
    by_id = {d["_id"]: d for d in documents(uri, src)}
    assert (by_id[1]["name"], by_id[1]["tags"]) == ("from source", {"a": -1})
    assert by_id[3]["name"] == "from target" and 4 not in by_id and 2 not in by_id
    assert by_id[99] == NEW
    assert isinstance(by_id[99]["_id"], int)
    # each direction's transactions carry its marker in the database it writes: the other
    # direction's stream drops them, nothing echoes
    for _ in range(2):
        again = applied(cli.run("sync", "--once"))
        assert again == {"orders": 0, "orders.reverse": 0}, again
    with MongoClient(uri) as client:
        forward = client[tgt]["_syncengine_origins"].find_one({"_id": "syncengine_orders"})
        reverse = client[src]["_syncengine_origins"].find_one({"_id": "syncengine_orders_reverse"})
    assert forward is not None and forward["transactions"] >= 1
    assert reverse is not None and reverse["transactions"] >= 1
    cli.run("verify", "--pipeline", "orders")
    write(uri, tgt, ("update_one", {"_id": Int64(7)}, {"$set": {"name": "not synced yet"}}))
    assert cli.run("verify", "--pipeline", "orders", check=False).returncode == 1


#: ids 1-3 edited on both sides: 1 updated on both, 2 deleted at the source and updated at
#: the target, 3 the other way round
SRC_EDITS: tuple[Op, ...] = (
    ("update_one", {"_id": Int64(1)}, {"$set": {"name": "src"}}),
    ("delete_one", {"_id": Int64(2)}, None),
    ("update_one", {"_id": Int64(3)}, {"$set": {"name": "src"}}),
)
TGT_EDITS: tuple[Op, ...] = (
    ("update_one", {"_id": Int64(1)}, {"$set": {"name": "tgt"}}),
    ("update_one", {"_id": Int64(2)}, {"$set": {"name": "tgt"}}),
    ("delete_one", {"_id": Int64(3)}, None),
)


def both_edit(uri: str, src: str, tgt: str, first: str) -> None:
    """The edits on both sides before either is synced, ``first`` side first (its writes are
    the older ones)."""
    for side in (first, "target" if first == "source" else "source"):
        if side == "source":
            write(uri, src, *SRC_EDITS)
        else:
            write(uri, tgt, *TGT_EDITS)
        time.sleep(0.05)  # distinct times (Mongo's are milliseconds)


def names(uri: str, db: str, ids: tuple[int, ...]) -> dict[int, str]:
    return {d["_id"]: d["name"] for d in documents(uri, db) if d["_id"] in ids}


@pytest.mark.parametrize(("later", "first"), [("source", "orders"), ("target", "orders.reverse")])
def test_timestamp_last_writer_wins_deletes_included(tmp_path, sides, later, first):
    uri, src, tgt = sides
    cli = make_cli(tmp_path, uri, src, tgt, "{strategy: timestamp}")
    cli.run("sync", "--once")
    both_edit(uri, src, tgt, "target" if later == "source" else "source")
    cli.run("sync", "--once", "--pipeline", first)  # either direction may meet them first
    converge(cli)
    assert same(uri, src, tgt)
    expected = {"source": {1: "src", 3: "src"}, "target": {1: "tgt", 2: "tgt"}}[later]
    assert names(uri, src, (1, 2, 3)) == expected
    assert {k for _, k, s, _ in audit(cli) if s == "timestamp"}, audit(cli)


@pytest.mark.parametrize("carried", [False, True], ids=["not yet carried", "carried first"])
def test_timestamp_a_later_delete_meeting_no_document_still_beats_an_older_write(
    tmp_path, sides, carried
):
    """The corner tombstones close (targets/mongo/versions.py): the reverse's delete finds the
    source's document already gone (its own earlier, provisional delete) and writes no data,
    yet it is the latest write of the key. The source's older update must not survive on the
    target, whether the forward carries it across before that delete (``carried``: only the
    tombstone's echo can then correct it) or after."""
    uri, src, tgt = sides
    cli = make_cli(tmp_path, uri, src, tgt, "{strategy: timestamp}")
    cli.run("sync", "--once")
    key = {"_id": Int64(7)}
    write(uri, tgt, ("delete_one", key, None))
    time.sleep(0.05)
    write(uri, src, ("update_one", key, {"$set": {"name": "src, older"}}))
    time.sleep(0.05)
    # the reverse meets the target's delete first: the source's update (whose time a Mongo
    # side cannot know) is deleted provisionally
    cli.run("sync", "--once", "--pipeline", "orders.reverse")
    assert doc(uri, src, 7) is None
    write(uri, tgt, ("insert_one", {**key, "name": "tgt again", "qty": 1}, None))
    time.sleep(0.05)
    write(uri, tgt, ("delete_one", key, None))  # the latest write of the key
    if carried:  # over the target's delete, whose time it cannot know: provisionally
        cli.run("sync", "--once", "--pipeline", "orders")
        assert doc(uri, tgt, 7) is not None
    # this delete meets no document at the source: only its tombstone says it happened
    cli.run("sync", "--once", "--pipeline", "orders.reverse")
    converge(cli)
    assert same(uri, src, tgt)
    assert doc(uri, src, 7) is None and doc(uri, tgt, 7) is None
    assert ("orders", '{"_id":7}', "timestamp", "remote") in audit(cli)


@pytest.mark.parametrize("prefer", ["source", "target"])
def test_prefer_side_wins_every_conflict_in_both_directions(tmp_path, sides, prefer):
    uri, src, tgt = sides
    cli = make_cli(tmp_path, uri, src, tgt, f"{{prefer: {prefer}}}")
    cli.run("sync", "--once")
    both_edit(uri, src, tgt, prefer)  # the preferred side's older edits still win
    converge(cli)
    assert same(uri, src, tgt)
    expected = {"source": {1: "src", 3: "src"}, "target": {1: "tgt", 2: "tgt"}}[prefer]
    assert names(uri, src, (1, 2, 3)) == expected
    outcomes = {(d, k) for d, k, _, _ in audit(cli)}
    assert ("orders", '{"_id":1}') in outcomes, outcomes


def test_merge_combines_fields_edited_on_each_side(tmp_path, sides):
    uri, src, tgt = sides
    cli = make_cli(tmp_path, uri, src, tgt, "{strategy: merge}")
    cli.run("sync", "--once")
    write(uri, src, ("update_one", {"_id": Int64(1)}, {"$set": {"name": "src"}}))
    time.sleep(0.05)
    write(
        uri,
        tgt,
        ("update_one", {"_id": Int64(1)}, {"$set": {"qty": 100}}),
        ("update_one", {"_id": Int64(5)}, {"$set": {"name": "tgt"}}),
    )
    time.sleep(0.05)
    write(uri, src, ("update_one", {"_id": Int64(5)}, {"$set": {"name": "src later"}}))
    converge(cli)
    assert same(uri, src, tgt)
    by_id = {d["_id"]: d for d in documents(uri, src)}
    # different fields: both edits kept; the same field: the later write
    assert (by_id[1]["name"], by_id[1]["qty"]) == ("src", 100)
    assert by_id[5]["name"] == "src later"


def test_daemon_runs_both_directions(tmp_path, sides):
    uri, src, tgt = sides
    cli = make_cli(tmp_path, uri, src, tgt, "{strategy: timestamp}")
    daemon = cli.start("run")
    try:
        wait_for(lambda: len(documents(uri, tgt)) == 50, timeout=90)
        write(uri, src, ("update_one", {"_id": Int64(5)}, {"$set": {"name": "live src"}}))
        write(uri, tgt, ("update_one", {"_id": Int64(6)}, {"$set": {"name": "live tgt"}}))
        try:
            wait_for(
                lambda: (
                    same(uri, src, tgt)
                    and names(uri, src, (5, 6)) == {5: "live src", 6: "live tgt"}
                ),
                timeout=30,
            )
        except AssertionError as missing:
            raise AssertionError(cli.daemon_logs()[-6000:]) from missing
    finally:
        assert cli.stop(daemon) == 0
    assert applied(cli.run("sync", "--once")) == {"orders": 0, "orders.reverse": 0}


def conflicts(cli: CLI) -> list[dict[str, Any]]:
    return json.loads(cli.run("conflicts", "list", "--json").stdout)


def doc(uri: str, db: str, key: int) -> dict[str, Any] | None:
    with MongoClient(uri) as client:
        return client[db]["items"].find_one({"_id": Int64(key)})


def test_manual_parks_on_both_sides_and_resolving_writes_both(tmp_path, sides):
    uri, src, tgt = sides
    cli = make_cli(tmp_path, uri, src, tgt, "{strategy: manual}")
    cli.run("sync", "--once")
    write(uri, src, ("update_one", {"_id": Int64(1)}, {"$set": {"name": "src"}}))
    time.sleep(0.05)
    write(uri, tgt, ("update_one", {"_id": Int64(1)}, {"$set": {"name": "tgt"}}))
    # the forward direction meets the conflict and parks it, the reverse holds its edit
    assert applied(cli.run("sync", "--once")) == {"orders": 0, "orders.reverse": 0}
    (parked,) = conflicts(cli)
    assert (parked["pipeline"], parked["key"], parked["held_changes"]) == ("orders", {"_id": 1}, 1)
    # more edits of the key wait too, on either side; other keys flow
    write(uri, src, ("update_one", {"_id": Int64(1)}, {"$set": {"qty": 7}}))
    write(uri, tgt, ("update_one", {"_id": Int64(9)}, {"$set": {"name": "free"}}))
    assert applied(cli.run("sync", "--once")) == {"orders": 0, "orders.reverse": 1}
    assert (doc(uri, src, 1)["name"], doc(uri, tgt, 1)["name"]) == ("src", "tgt")
    assert conflicts(cli)[0]["held_changes"] == 2

    out = cli.run("conflicts", "resolve", str(parked["id"]), "--take", "local").stdout
    # the target's document, then the source's later edit (held, released in commit order;
    # an update read as made is the whole document it left)
    assert "released 1 held change(s)" in out, out
    assert [doc(uri, db, 1) for db in (src, tgt)] == [
        {"_id": 1, "name": "src", "qty": 7, "tags": {"a": 1}}
    ] * 2, out
    # written under the manual origin's marker: each stream takes it as an echo
    for _ in range(2):
        assert applied(cli.run("sync", "--once")) == {"orders": 0, "orders.reverse": 0}
    assert same(uri, src, tgt) and conflicts(cli) == []
    with MongoClient(uri) as client:
        markers = [
            client[db]["_syncengine_origins"].find_one({"_id": marker})
            for db, marker in ((tgt, "syncengine_orders.manual"),
                               (src, "syncengine_orders_reverse.manual"))
        ]  # fmt: skip
    assert all(m is not None and m["transactions"] >= 1 for m in markers), markers
    decided = {(d, k, o) for d, k, s, o in audit(cli) if s == "manual"}
    assert {
        ("orders", '{"_id":1}', "take_local"),
        ("orders.reverse", '{"_id":1}', "take_local"),
    } <= (decided), audit(cli)
    # the key flows again, both ways
    write(uri, tgt, ("update_one", {"_id": Int64(1)}, {"$set": {"name": "after"}}))
    converge(cli)
    assert doc(uri, src, 1)["name"] == "after"
