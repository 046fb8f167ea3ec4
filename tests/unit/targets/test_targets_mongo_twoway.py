"""The Mongo target's two-way helpers that need no server: versions and read-back records."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pyarrow as pa
from bson import Int64

from syncengine.mongoids import same_id
from syncengine.targets.base import TableSpec
from syncengine.targets.mongo import readback, versions


def test_read_back_ids_match_across_integer_widths():
    seen: readback.Seen = {}
    readback.record(seen, "items", [Int64(1), 2, "a"], [{"_id": 1, "n": "x"}, {"_id": "a"}])
    assert seen["items"] == {1: {"_id": 1, "n": "x"}, 2: None, repr("a"): {"_id": "a"}}
    assert same_id(True) == repr(True)  # a bool is not the integer 1


def test_a_document_is_this_directions_write_when_it_hashes_as_recorded():
    recorded = pa.table(
        {
            "row_key": ['{"_id":1}', '{"_id":2}', '{"_id":3}'],
            "deleted": [False, False, True],
            "h": ["h1", "h2", None],
        }
    )
    keys = pl.Series(['{"_id":1}', '{"_id":2}', '{"_id":3}', '{"_id":4}'])
    hashes = pl.Series(["h1", "other", "h3", "h4"])
    # 1 as written; 2 rewritten by someone; 3 recorded as deleted; 4 never recorded
    assert versions.mine(keys, hashes, recorded).to_list() == [True, False, False, False]


def test_versions_keep_microseconds():
    ts = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    rows = pa.table(
        {
            "row_key": ['{"_id":1}'],
            "ts": pa.array([ts], pa.timestamp("us", tz="UTC")),
            "side": ["remote"],
            "deleted": [False],
            "hash": ["h"],
        }
    )
    (op,) = versions.operations("orders", "items", rows)
    doc = op._doc  # the replacement document
    assert doc["ts"] == 1_767_323_045_123_456 and doc["h"] == "h" and doc["k"] == '{"_id":1}'


def test_a_recorded_delete_carries_the_deleted_documents_id():
    ts = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    rows = pa.table(
        {
            "row_key": ['{"id":1}', '{"id":2}'],
            "ts": pa.array([ts, ts], pa.timestamp("us", tz="UTC")),
            "side": ["remote", "remote"],
            "deleted": [False, True],
            "hash": ["h", None],
        }
    )
    spec = TableSpec("items", ("id",), pa.schema([("id", pa.int64()), ("name", pa.string())]))
    written, deleted = versions.operations("orders", "items", rows, spec)
    assert "id" not in written._doc  # a written row's version is no tombstone
    assert deleted._doc["id"] == 2 and deleted._doc["deleted"] is True
    # without the spec (a caller that needs no tombstones) nothing changes
    assert all("id" not in op._doc for op in versions.operations("orders", "items", rows))


def test_a_key_only_spec_hashes_documents_whole():
    """The spec of a Mongo source's deletes is ``_id`` alone: a document is then hashed with
    all its fields, as the row written was (versions.widened)."""
    docs = [{"_id": Int64(1), "name": "a", "tags": {"x": 1}}, {"_id": Int64(2), "qty": 3}]
    key_only = TableSpec("items", ("_id",), pa.schema([("_id", pa.int64())]))
    whole = versions.widened(key_only, docs)
    assert whole.schema.names == ["_id", "name", "tags", "qty"] and whole.key == ("_id",)
    # a spec with columns is the one the rows were written with: the other fields stay out
    mapped = TableSpec("items", ("_id",), pa.schema([("_id", pa.int64()), ("name", pa.string())]))
    assert versions.widened(mapped, docs) is mapped
    assert versions.widened(key_only, [{"_id": 1}]) is key_only
