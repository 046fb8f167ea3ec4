"""Stored values of a Postgres column whose Arrow type cannot hold them, read back as Postgres text.

The Mongo target stores what a Postgres source sends beyond Arrow or Python as documented in
docs/postgres-source.md: a date or timestamp outside years 1-9999 as its Postgres text
(``"infinity"``, ``"4713-01-01 BC"``), ``time '24:00'`` as a string, a multi-dimensional number
array as nested arrays, ``NaN`` of a ``numeric(p,s)`` as ``Decimal128("NaN")``. Conflict
detection reads such documents back: when a column does not convert to the spec's type the
usual way, its stored values become the text Postgres prints for them, and that text goes
through the source's own converters (:func:`syncengine.codecs.pg_carried.restore`): native
where a value has a native form, else the column stays text as a source batch would carry it.
Only a column whose usual conversion failed takes this path (one Python step per value of the
documents read, like their decoding).
"""

from __future__ import annotations

import datetime as _dt
import re
from decimal import Decimal
from typing import Any

import pyarrow as pa
from bson import Decimal128

from syncengine.codecs import pg_carried, pg_temporal

_QUOTE = re.compile(r'[{}",\\\s]')


def read_back(field: pa.Field, values: list[Any]) -> tuple[pa.Field, pa.Array] | None:
    """``values`` (one column of the documents) in ``field``'s type, or as Postgres text for a
    value with none; None for a column this module does not know (the caller decides)."""
    t = field.type
    temporal = pa.types.is_date32(t) or (pa.types.is_timestamp(t) and t.unit == "us")
    carried = pg_carried.carried(field)  # a batch carrying the column as text: text too
    carrier = pg_carried.held_natively(field)
    if carried is None and carrier is None and not temporal:
        return None
    text = pa.array([_text(v, t) for v in values], pa.string())
    if carried is not None:
        return field, text.cast(t)
    if carrier is not None:
        return pg_carried.restore(text, field, carrier)
    return field, pg_temporal.from_text(text, t, strict=False)


def _text(value: Any, t: pa.DataType) -> str | None:
    """One stored value as Postgres prints it (``DateStyle=ISO``, UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, _dt.datetime):
        stamp: _dt.datetime = value
        if stamp.tzinfo is not None:
            stamp = stamp.astimezone(_dt.UTC).replace(tzinfo=None)
        if pa.types.is_date32(t):
            return stamp.date().isoformat()
        return stamp.isoformat(sep=" ") + ("+00" if getattr(t, "tz", None) else "")
    if isinstance(value, Decimal128):
        return str(value.to_decimal())
    if isinstance(value, list):
        return "{" + ",".join(_element(v) for v in value) + "}"
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


def _element(value: Any) -> str:
    """An array element: nested arrays in braces, NULL, text quoted where Postgres quotes."""
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return "{" + ",".join(_element(v) for v in value) + "}"
    if isinstance(value, str):
        if value == "" or value.lower() == "null" or _QUOTE.search(value):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return value
    if isinstance(value, Decimal | Decimal128):
        return str(value.to_decimal() if isinstance(value, Decimal128) else value)
    return _text(value, pa.null()) or ""
