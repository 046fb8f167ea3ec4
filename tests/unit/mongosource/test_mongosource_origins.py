"""Recognising the engine's own Mongo transactions by their marker (two-way), pure."""

from __future__ import annotations

from bson import Int64, Timestamp

from syncengine.changes import OP_DELETE
from syncengine.sources.mongo.events import event_rows
from syncengine.sources.mongo.origins import Echoes, marker_match, tombstone_match
from syncengine.targets.mongo.origin import ORIGINS
from syncengine.targets.mongo.versions import VERSIONS


def event(coll: str, txn: int | None, lsid: bytes = b"a" * 16, key: object = 1) -> dict:
    found = {
        "_id": {"_data": "x"},
        "operationType": "update",
        "clusterTime": Timestamp(1_700_000_000, 1),
        "ns": {"db": "shop", "coll": coll},
        "documentKey": {"_id": key},
    }
    if txn is not None:
        found["lsid"] = {"id": lsid, "uid": b"u"}
        found["txnNumber"] = Int64(txn)
    return found


def test_events_after_the_marker_in_its_transaction_are_echoes():
    echoes = Echoes(["syncengine_orders"])
    assert echoes.see(event(ORIGINS, 5, key="syncengine_orders")) is None
    assert echoes.see(event("orders", 5)) is True
    assert echoes.see(event("orders", 5, key=2)) is True
    # the next transaction of the same session, unmarked: someone else's (not the engine's)
    assert echoes.see(event("orders", 6)) is False
    # another session with the same transaction number is another transaction
    assert echoes.see(event(ORIGINS, 7, key="syncengine_orders")) is None
    assert echoes.see(event("orders", 7, lsid=b"b" * 16)) is False
    assert echoes.see(event("orders", None)) is False


def test_a_marker_of_another_origin_is_not_ours():
    echoes = Echoes(["syncengine_orders"])
    assert echoes.see(event(ORIGINS, 5, key="syncengine_other")) is None
    assert echoes.see(event("orders", 5)) is False


def test_without_origins_nothing_is_an_echo_and_no_marker_is_watched():
    echoes = Echoes([])
    assert echoes.see(event(ORIGINS, 5, key="syncengine_orders")) is False
    assert marker_match([]) == []
    assert marker_match(["o"]) == [{"ns.coll": ORIGINS, "documentKey._id": {"$in": ["o"]}}]


def version(txn: int | None, key: object, deleted: bool = True, coll: str = "orders") -> dict:
    """The event of a version the sibling recorded (``_syncengine_versions``)."""
    found = event(VERSIONS, txn, key='["p","orders","{}"]')
    found["operationType"] = "replace"
    found["fullDocument"] = {"t": coll, "deleted": deleted, "id": key}
    return found


def test_a_recorded_delete_in_an_echo_transaction_is_the_delete_of_its_document():
    echoes = Echoes(["syncengine_orders"])
    echoes.see(event(ORIGINS, 5, key="syncengine_orders"))
    tombstone = version(5, Int64(9))
    assert echoes.see(tombstone) is True
    gone = echoes.data_event(tombstone)
    assert gone is not None
    assert gone["operationType"] == "delete"
    assert gone["ns"] == {"db": "shop", "coll": "orders"}
    assert gone["documentKey"] == {"_id": Int64(9)}
    assert "fullDocument" not in gone
    # read like any delete event, at the tombstone's position
    (row,) = event_rows(gone, ["orders"])
    assert (row.op, row.doc) == (OP_DELETE, {"_id": 9})
    # any other event stands for itself
    plain = event("orders", 5)
    assert echoes.data_event(plain) is plain


def test_a_tombstone_of_a_document_the_transaction_deleted_itself_is_no_second_delete():
    echoes = Echoes(["syncengine_orders"])
    echoes.see(event(ORIGINS, 5, key="syncengine_orders"))
    deleted = {**event("orders", 5, key=Int64(9)), "operationType": "delete"}
    assert echoes.see(deleted) is True
    assert echoes.data_event(version(5, Int64(9))) is None
    assert echoes.data_event(version(5, 9)) is None  # an integer of another width
    assert echoes.data_event(version(5, Int64(10))) is not None  # another document
    # the next marked transaction starts afresh
    echoes.see(event(ORIGINS, 6, key="syncengine_orders"))
    assert echoes.data_event(version(6, Int64(9))) is not None


def test_a_version_that_is_no_tombstone_stands_for_no_change():
    echoes = Echoes(["syncengine_orders"])
    echoes.see(event(ORIGINS, 5, key="syncengine_orders"))
    assert echoes.data_event(version(5, Int64(9), deleted=False)) is None
    old = version(5, Int64(9))
    del old["fullDocument"]["id"]  # recorded before tombstones carried the _id
    assert echoes.data_event(old) is None


def test_tombstones_are_watched_only_with_origins():
    assert tombstone_match([], ["orders"]) == []
    (match,) = tombstone_match(["o"], ["orders"])
    assert match["ns.coll"] == VERSIONS and match["fullDocument.t"] == {"$in": ["orders"]}
