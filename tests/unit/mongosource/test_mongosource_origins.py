"""Recognising the engine's own Mongo transactions by their marker (two-way), pure."""

from __future__ import annotations

from bson import Int64, Timestamp

from syncengine.sources.mongo.origins import Echoes, marker_match
from syncengine.targets.mongo.origin import ORIGINS


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
