"""Columns generated at a Postgres source reach the stream never (before Postgres 18): a
target that cannot generate them is warned of, once per table and schema."""

from __future__ import annotations

import logging

import pyarrow as pa

from syncengine.runtime.pipeline import _stale_generated
from syncengine.targets.base import TableSpec

SPEC = TableSpec(
    "items",
    ("id",),
    pa.schema(
        [
            pa.field("id", pa.int64()),
            pa.field("total", pa.string(), metadata={"pg_generated": "(qty * price)"}),
        ]
    ),
)


class Generating:
    generates_columns = True


class Documents:
    pass


def test_a_target_that_cannot_generate_them_is_warned_of(caplog):
    with caplog.at_level(logging.WARNING):
        _stale_generated(Documents(), SPEC)  # type: ignore[arg-type]
    assert "items: total generated at the source" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        _stale_generated(Generating(), SPEC)  # type: ignore[arg-type]
        _stale_generated(Documents(), TableSpec("plain", ("id",), pa.schema([("id", pa.int64())])))  # type: ignore[arg-type]
    assert caplog.text == ""
