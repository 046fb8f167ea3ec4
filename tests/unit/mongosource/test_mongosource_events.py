"""Change-event decoding, transaction boundaries, positions, chunk bounds, error mapping."""

from __future__ import annotations

import datetime as dt

import pytest
from bson import Binary, ObjectId, Timestamp
from hypothesis import given
from hypothesis import strategies as st
from pymongo.errors import AutoReconnect, OperationFailure

from syncengine.errors import FatalError, HistoryLost, PermissionProblem, SourceUnavailable
from syncengine.sources.mongo.batches import rows_to_batch
from syncengine.sources.mongo.errors import map_error
from syncengine.sources.mongo.events import Boundaries, apply_update, event_rows, txn_of
from syncengine.sources.mongo.positions import (
    event_position,
    parse_position,
    position_time,
    time_position,
    token_time,
)
from syncengine.sources.mongo.snapshot import (
    chunk_filter,
    decode_bound,
    encode_bound,
    parse_where,
    quantile_bounds,
)
from syncengine.state.base import Chunk

COLLS = ["items"]


def event(kind, n, **extra):
    return {
        "_id": {"_data": f"tok{n:04d}"},
        "operationType": kind,
        "clusterTime": Timestamp(1_700_000_000, n),
        "ns": {"db": "d", "coll": "items"},
        "documentKey": {"_id": n},
        **extra,
    }


def test_insert_update_delete_rows():
    removed = {"updatedFields": {"b": 2}, "removedFields": ["gone", "sub.x"]}
    rows = [
        *event_rows(event("insert", 1, fullDocument={"_id": 1, "a": 1}), COLLS),
        *event_rows(
            event("update", 2, fullDocument={"_id": 2, "b": 2}, updateDescription=removed),
            COLLS,
        ),
        *event_rows(event("replace", 3, fullDocument={"_id": 3}), COLLS),
        *event_rows(event("delete", 4), COLLS),
    ]
    assert [r.op for r in rows] == ["c", "u", "c", "d"]
    assert rows[0].pos == "6553F10000000001:tok0001"
    assert rows[0].ts == dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC)
    batch = rows_to_batch("items", rows, resume="x")
    data = batch.data.to_pylist()
    # absent fields are unsent; a field the update removed is sent as null
    assert data[0]["_unsent.b"] is True and data[1]["_unsent.a"] is True
    assert data[1]["gone"] is None and data[1]["_unsent.gone"] is False
    assert data[0]["_unsent.gone"] is True
    assert batch.meta["resume"] == "x" and batch.key == ("_id",)


def test_partial_update_without_full_document():
    description = {
        "updatedFields": {"a": 5, "sub.x": 1},
        "removedFields": ["b", "arr.2"],
        "truncatedArrays": [],
    }
    ev = event("update", 7, fullDocument=None, updateDescription=description)
    (row,) = event_rows(ev, COLLS)
    assert row.doc == {"_id": 7, "a": 5, "b": None}
    assert "sub" in row.warnings[0] and "arr" in row.warnings[0]
    data = rows_to_batch("items", [row]).data.to_pylist()[0]
    assert data["a"] == 5 and data["b"] is None
    assert "_unsent.a" not in data  # sent in every row


def test_partial_update_rebuilt_from_before_image():
    before = {"_id": 7, "sub": {"x": 0, "y": 1}, "arr": [1, 2, 3, 4], "gone": 1}
    description = {
        "updatedFields": {"sub.x": 10, "arr.1": 20, "new.deep": True},
        "removedFields": ["gone", "sub.y"],
        "truncatedArrays": [{"field": "arr", "newSize": 3}],
    }
    ev = event(
        "update",
        7,
        fullDocument=None,
        updateDescription=description,
        fullDocumentBeforeChange=before,
    )
    (row,) = event_rows(ev, COLLS)
    assert row.doc == {
        "_id": 7,
        "sub": {"x": 10},
        "arr": [1, 20, 3],
        "new": {"deep": True},
        "gone": None,
    }
    assert not row.warnings
    assert before["arr"] == [1, 2, 3, 4]  # the pre-image is not modified


def test_apply_update_extends_arrays():
    assert apply_update({"a": [1]}, {"updatedFields": {"a.3": 9}}) == {"a": [1, None, None, 9]}


def test_truncating_events_and_filters():
    assert [r.op for r in event_rows(event("drop", 1), COLLS)] == ["t"]
    renamed = event("rename", 2, to={"db": "d", "coll": "other"})
    assert [r.op for r in event_rows(renamed, COLLS)] == ["t"]
    dropped = event("dropDatabase", 3, ns={"db": "d"})
    assert [(r.collection, r.op) for r in event_rows(dropped, ["a", "b"])] == [
        ("a", "t"),
        ("b", "t"),
    ]
    assert event_rows(event("invalidate", 4), COLLS) == []
    other = event("insert", 5, fullDocument={"_id": 1}, ns={"db": "d", "coll": "x"})
    assert event_rows(other, COLLS) == []
    (lookup,) = event_rows(event("insert", 6, fullDocument=None), COLLS)
    assert lookup.lookup and lookup.doc == {"_id": 6}


def test_boundaries_skip_open_transactions():
    lsid = {"id": Binary(b"0" * 16, 4)}
    txn = {"lsid": lsid, "txnNumber": 3}
    b = Boundaries("start")
    b.see(None, "p1")
    assert b.last == "p1"
    b.see(txn_of(txn), "p2")
    b.see(txn_of(txn), "p3")
    assert b.last == "p1"  # the transaction may continue
    b.see(txn_of({**txn, "txnNumber": 4}), "p4")
    assert b.last == "p3"  # the first transaction ended with p3
    b.see(None, "p5")
    assert b.last == "p5"


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_positions_sort_by_cluster_time(t1, i1, t2):
    a, b = Timestamp(t1, i1), Timestamp(t2, 0)
    pa_, pb = event_position(a, {"_data": "ff"}), time_position(b)
    assert (pa_ < pb) == ((t1, i1) < (t2, 0)) or (t1, i1) == (t2, 0)
    assert parse_position(pa_) == (a, {"_data": "ff"})
    assert position_time(pb) == b and parse_position(pb)[1] is None


def test_bad_position_is_fatal():
    with pytest.raises(FatalError):
        parse_position("not-a-position")


def test_chunk_bounds_round_trip_and_filters():
    oid = ObjectId()
    assert decode_bound(encode_bound(oid)) == oid
    assert decode_bound(encode_bound(5)) == 5 and decode_bound(None) is None
    chunk = Chunk("items", 0, encode_bound(1), encode_bound(10))
    assert chunk_filter(chunk, None) == {"_id": {"$gte": 1, "$lt": 10}}
    assert chunk_filter(Chunk("items", 0, None, None), {"a": 1}) == {"a": 1}
    assert chunk_filter(chunk, {"a": 1}) == {"$and": [{"_id": {"$gte": 1, "$lt": 10}}, {"a": 1}]}


def test_quantile_bounds_are_sorted_and_distinct():
    points = quantile_bounds([5, 1, 9, 3, 7, 3, 2, 8], 4)
    assert points == sorted(set(points)) and len(points) == 3
    assert quantile_bounds([1], 4) == [] and quantile_bounds([1, 2, 3], 1) == []


def test_error_mapping():
    lost = map_error(OperationFailure("gone", code=286), "reading")
    assert isinstance(lost, HistoryLost)
    assert isinstance(map_error(OperationFailure("x", code=189), "r"), SourceUnavailable)
    assert isinstance(map_error(AutoReconnect("down"), "r"), SourceUnavailable)
    assert isinstance(map_error(OperationFailure("no", code=13), "r"), PermissionProblem)
    fatal = map_error(OperationFailure("bad", code=2), "r")
    assert isinstance(fatal, FatalError) and not fatal.retriable
    secret = map_error(AutoReconnect("mongodb://user:hunter2@host/ failed"), "r")
    assert "hunter2" not in str(secret)


def test_snapshot_filters_are_match_documents_or_translatable_sql():
    assert parse_where('{"a": {"$gt": 1}}') == {"a": {"$gt": 1}}
    assert parse_where({"a": 1}) == {"a": 1} and parse_where(None) is None
    assert parse_where("n > 3") == {"n": {"$gt": 3}}
    with pytest.raises(ValueError, match="cannot be translated"):
        parse_where("lower(name) = 'x'")


def test_token_time_reads_real_mongodb_tokens_only():
    real = {"_data": "8265A1B2C3000000042B022C0100296E5A1004"}
    assert token_time(real) == Timestamp(0x65A1B2C3, 4)
    assert token_time({"_data": "34000000107300040000"}) is None  # another server's layout
    assert token_time({"_data": "820000001073000400000011"}) is None  # implausible time
    assert token_time(None) is None


def test_a_batch_of_only_a_drop_compacts():
    ev = event("drop", 1)
    batch = rows_to_batch("items", event_rows(ev, COLLS) + event_rows(event("drop", 2), COLLS))
    assert batch.data.column("_id").to_pylist() == [None, None]
    assert batch.compact().data.column("_op").to_pylist() == ["t"]


def test_empty_documents_are_rows():
    from syncengine.codecs.bson_arrow import decode_documents

    assert decode_documents([{}, {}]).table.num_rows == 2


def test_current_documents_are_never_followed_by_older_states():
    """Under ``updateLookup`` (``current``) a row is the document as looked up now, so neither an
    update's own fields nor a replacement as of its event may become a row (F22)."""
    gone = event("update", 7, fullDocument=None, updateDescription={"updatedFields": {"a": 2}})
    assert event_rows(gone, COLLS, current=True) == []
    replace = event("replace", 8, fullDocument={"_id": 8, "a": 1})
    (looked_up,) = event_rows(replace, COLLS, current=True)
    assert looked_up.lookup and looked_up.op == "c" and looked_up.doc == {"_id": 8}
    (as_of_event,) = event_rows(replace, COLLS)  # post-images: every row is as of its event
    assert not as_of_event.lookup and as_of_event.doc == {"_id": 8, "a": 1}


def test_top_level_update_with_a_before_image_is_the_whole_post_image():
    """``full_document: default`` with before-images (two-way's reverse stream): the row is the
    document as the update left it, every field sent."""
    before = {"_id": 7, "name": "a", "qty": 1, "gone": 2}
    description = {"updatedFields": {"name": "b"}, "removedFields": ["gone"]}
    ev = event("update", 7, updateDescription=description, fullDocumentBeforeChange=before)
    (row,) = event_rows(ev, COLLS)
    assert row.doc == {"_id": 7, "name": "b", "qty": 1, "gone": None}
