"""What a Postgres source declares beyond Arrow types: generated columns, whose values the
stream never carries (not written, and never hashed), and the values of columns added with a
default (filled in only where nothing compares rows with the shadow)."""

from __future__ import annotations

import logging

import pyarrow as pa

from syncengine.changes import ChangeBatch
from syncengine.config.models import ConflictsConfig
from syncengine.runtime.declared import defaults_kept, stale_generated, without_generated
from syncengine.targets.base import TableSpec

GENERATED = pa.field("total", pa.string(), metadata={"pg_generated": "(qty * price)"})
SPEC = TableSpec("items", ("id",), pa.schema([pa.field("id", pa.int64()), GENERATED]))


class Generating:
    generates_columns = True
    change_log = False


class Documents:
    change_log = False


def test_a_target_that_cannot_generate_them_is_warned_of(caplog):
    with caplog.at_level(logging.WARNING):
        stale_generated(Documents(), SPEC)  # type: ignore[arg-type]
    assert "items: total generated at the source" in caplog.text
    caplog.clear()
    plain = TableSpec("plain", ("id",), pa.schema([("id", pa.int64())]))
    with caplog.at_level(logging.WARNING):
        stale_generated(Generating(), SPEC)  # type: ignore[arg-type]
        stale_generated(Documents(), plain)  # type: ignore[arg-type]
    assert caplog.text == ""


def test_writes_never_carry_a_generated_column():
    rows = pa.table({"id": [1, 2], "total": ["1.5", "3"]})
    batch = ChangeBatch.build(
        "items", rows, ops=["r", "r"], positions=["a", "b"], key=["id"],
        before=rows, unsent={"total": [False, False]},
    )  # fmt: skip
    spec, (part,) = without_generated(SPEC, [batch])
    assert spec.schema.names == ["id"]
    assert not [c for c in part.data.column_names if "total" in c]
    assert part.data.column("id").to_pylist() == [1, 2]


def test_an_added_default_is_filled_in_only_without_detection(caplog):
    added = pa.field("d", pa.int32(), metadata={"pg_type": "integer", "pg_missing": "5"})
    spec = TableSpec("items", ("id",), pa.schema([pa.field("id", pa.int64()), added]))
    warned: set[tuple[str, str]] = set()
    remote = ConflictsConfig(strategy="remote")
    assert defaults_kept(spec, remote, Generating(), warned) is spec  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        local = defaults_kept(spec, ConflictsConfig(strategy="local"), Generating(), warned)  # type: ignore[arg-type]
        again = defaults_kept(spec, ConflictsConfig(strategy="local"), Generating(), warned)  # type: ignore[arg-type]
    assert b"pg_missing" not in (local.schema.field("d").metadata or {})
    assert local.schema.field("d").metadata[b"pg_type"] == b"integer"
    assert again.schema == local.schema
    assert caplog.text.count("items.d was added at the source with a default") == 1
