"""Timestamps as precise as the target holds them: a Mongo target's BSON dates keep
milliseconds, a Postgres source sends microseconds.

A strategy that reads the target (``local``, ``merge``, ``timestamp``, ``manual``) compares
the document read back with the shadow, which held the source's version of the row: with
microseconds the document can never have, every change of a row with a timestamp was a
conflict nobody made (``local`` dropped every one, ``manual`` parked every one). So the
non-key timestamp columns of a group's batches (and lists of them: a ``timestamptz[]``) are
floored to the target's unit before they are resolved, as the driver floors them when it
writes (``datetime`` → BSON date): hashes, merges and the shadow then hold what the target
holds. Key columns keep their values: a key's values name its shadow row. A target says its
unit with ``timestamp_unit`` (optional; absent: it holds what it is sent).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from syncengine.changes import ChangeBatch
from syncengine.codecs.pg_temporal import PY_MAX_US, PY_MIN_US
from syncengine.targets.base import TableSpec

if TYPE_CHECKING:
    import polars as pl
else:
    from syncengine.deferred import polars as pl

#: Arrow's temporal units, coarsest first, and the names ``floor_temporal`` takes for them
_FINER = {"s": 0, "ms": 1, "us": 2, "ns": 3}
_UNIT_NAMES = {"s": "second", "ms": "millisecond", "us": "microsecond"}


def held_as_stored(target: object, spec: TableSpec, parts: list[ChangeBatch]) -> list[ChangeBatch]:
    """``parts`` with the finer timestamps of ``spec``'s non-key columns floored to the
    target's ``timestamp_unit``; the same list when it has none or nothing is finer."""
    finer = _finer_columns(target, spec)
    if finer is None:
        return parts
    unit, names = finer
    out = []
    for part in parts:
        data = floored(part.data, names, unit)
        out.append(part if data is part.data else part.replace(data))
    return out


def frame_floor(target: object, spec: TableSpec) -> Callable[[pl.DataFrame], pl.DataFrame] | None:
    """For rows decoded from the shadow (``rows.retag_hashes``): the same flooring as
    :func:`held_as_stored`, or None when the target holds what it is sent."""
    finer = _finer_columns(target, spec)
    if finer is None:
        return None
    unit, names = finer

    def floor(frame: pl.DataFrame) -> pl.DataFrame:
        out = pl.from_arrow(floored(frame.to_arrow(), names, unit))
        assert isinstance(out, pl.DataFrame)
        return out

    return floor


def floored(table: pa.Table, names: Sequence[str], unit: str) -> pa.Table:
    """``table`` with the timestamps of columns ``names`` (top level, or the items of a
    list) floored to ``unit``, their types unchanged; the same table when none is finer."""
    for name in names:
        if name not in table.column_names:
            continue
        index = table.column_names.index(name)
        column = table.column(index)
        if not _finer(column.type, unit):
            continue
        chunks = [_floor(chunk, unit) for chunk in column.chunks]
        table = table.set_column(index, table.field(index), pa.chunked_array(chunks, column.type))
    return table


def _finer_columns(target: object, spec: TableSpec) -> tuple[str, list[str]] | None:
    """The target's unit and ``spec``'s non-key columns finer than it; None when none is."""
    unit = getattr(target, "timestamp_unit", None)
    if unit is None:
        return None
    names = [f.name for f in spec.schema if f.name not in spec.key and _finer(f.type, unit)]
    return (unit, names) if names else None


def _finer(type_: pa.DataType, unit: str) -> bool:
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        type_ = type_.value_type
    return bool(pa.types.is_timestamp(type_) and _FINER[type_.unit] > _FINER[unit])


def _floor(values: pa.Array, unit: str) -> pa.Array:
    if pa.types.is_timestamp(values.type):
        floored = pc.floor_temporal(values, unit=_UNIT_NAMES[unit])
        if values.type.unit != "us":  # nanoseconds: all within Python's years
            return floored
        # beyond years 1-9999 (infinity, BC) a value is written as its Postgres text, every
        # microsecond of it: only the values that become BSON dates are floored
        micros = values.cast(pa.int64())
        dated = pc.and_(pc.greater_equal(micros, PY_MIN_US), pc.less_equal(micros, PY_MAX_US))
        return pc.if_else(pc.fill_null(dated, False), floored, values)
    # a list: its items, the same offsets (rebased: a slice's start where its items start)
    offsets = values.offsets
    start, end = offsets[0].as_py(), offsets[-1].as_py()
    items = _floor(values.values.slice(start, end - start), unit)
    rebased = pc.subtract(offsets, pa.scalar(start, offsets.type))
    cls = pa.LargeListArray if pa.types.is_large_list(values.type) else pa.ListArray
    return cls.from_arrays(rebased, items, type=values.type, mask=values.is_null())
