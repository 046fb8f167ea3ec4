"""A write narrowed to some of its keys (a Mongo group split in halves, a Postgres write
without its refused rows) keeps exactly those keys' shadow changes, versions included."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pyarrow as pa

from syncengine.changes import ChangeBatch
from syncengine.conflicts.versions import recorded_rows
from syncengine.targets.base import ShadowUpdate, TableSpec, TableWrite
from syncengine.targets.mongo.split import part
from syncengine.targets.shadow import without_rejected

KEYS = [f'{{"id":{i}}}' for i in range(1, 5)]


def two_way_write() -> TableWrite:
    """Rows 1-3 written (3 a delete), 4 a delete that found no row (recorded, and noted)."""
    data = pa.table({"id": [1, 2, 3, 4], "_op": ["u", "u", "d", "d"], "_pos": ["1", "2", "3", "4"]})
    upserts = pa.table({"row_key": KEYS, "row_hash": ["h1", "h2", None, None]})
    times = pl.Series([datetime(2026, 1, 1, 0, 0, i, tzinfo=UTC) for i in range(1, 5)])
    exists = pl.Series([True, True, False, False])
    written = pl.repeat(True, 4, eager=True)
    versions = recorded_rows(pl.Series(KEYS), times, "remote", exists, written)
    shadow = ShadowUpdate(upserts=upserts, versions=versions, absent_deletes=[KEYS[3]])
    spec = TableSpec("items", ("id",), pa.schema([("id", pa.int64())]))
    return TableWrite(spec, ChangeBatch("items", data, ("id",)), shadow)


def keys_of(table: pa.Table | None) -> list[str]:
    assert table is not None
    return table.column("row_key").to_pylist()


def test_each_half_of_a_split_group_records_its_own_keys_versions():
    write = two_way_write()
    first, second = part(write, 0, 2), part(write, 2, 4)
    assert keys_of(first.shadow.versions) == KEYS[:2]
    assert keys_of(second.shadow.versions) == KEYS[2:]
    assert keys_of(first.shadow.upserts) == KEYS[:2]
    assert list(first.shadow.absent_deletes) == []
    assert list(second.shadow.absent_deletes) == [KEYS[3]]


def test_a_refused_row_records_no_version():
    write = two_way_write()
    kept = without_rejected(write, pl.DataFrame({"id": [2]}))
    assert keys_of(kept.shadow.versions) == [KEYS[0], KEYS[2], KEYS[3]]
    assert keys_of(kept.shadow.upserts) == [KEYS[0], KEYS[2], KEYS[3]]
    assert list(kept.shadow.absent_deletes) == [KEYS[3]]
    # nothing refused: the write as it was
    assert without_rejected(write, pl.DataFrame({"id": []}, schema={"id": pl.Int64})) is write
