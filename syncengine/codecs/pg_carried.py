"""Columns a batch carries as Postgres text, and their values back in the native Arrow type.

A Postgres source carries a column as the text Postgres printed for a batch holding a value
its Arrow type cannot hold (``time '24:00'``, a multi-dimensional array, ``NaN`` in
``numeric(p,s)``, a timestamp past 294247 AD); ``pg_type`` stays the column's type. Whatever
computes over such a column (mapping expressions, conflict hashes) must not take that text for
the value: this module recognises the column (string Arrow type, ``pg_type`` of a type that is
native otherwise) and converts its values back with the source's own converters, so a value
reads exactly as it does in a native batch. Values that have no native form come back as a
mask, for the caller to decide (dead letter, text comparison).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from syncengine.codecs.pg_text import is_text

if TYPE_CHECKING:
    from syncengine.sources.postgres.columns import PgType

_TIME = re.compile(r"time(\(\d+\))? without time zone")
_TIMESTAMP = re.compile(r"timestamp(\(\d+\))? with(out)? time zone")
_NUMERIC = re.compile(r"numeric\((\d+),(\d+)\)")
# element types whose arrays are Arrow lists (syncengine.sources.postgres.columns._ARRAYS)
_LIST_ELEMENTS = {
    "boolean": pa.bool_(),
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "double precision": pa.float64(),
    "text": pa.string(),
    "character varying": pa.string(),
    "character": pa.string(),
    "uuid": pa.string(),
}
# values that have no native form, per converter kind (the first try converts them all)
_NO_NATIVE = {
    "time": r"^24:",
    "list": r"^(\{\{|\[)",
    "list_text": r"^(\{\{|\[)",
    "cast": r"^-?(NaN|Infinity)$",
    "temporal": r"^\d{6,}-",
}


def native_type(pg_type: str) -> PgType | None:
    """The :class:`~syncengine.sources.postgres.columns.PgType` a column of ``pg_type`` has
    in a batch that carries it natively; None for a type that always travels as text."""
    from syncengine.sources.postgres.columns import PgType

    if _TIME.fullmatch(pg_type):
        return PgType(1083, -1, pg_type, pa.time64("us"), "time")
    found = _TIMESTAMP.fullmatch(pg_type)
    if found:
        zone = None if found.group(2) else "UTC"
        return PgType(1114, -1, pg_type, pa.timestamp("us", tz=zone), "temporal")
    found = _NUMERIC.fullmatch(pg_type)
    if found and 0 < int(found.group(1)) <= 38:
        arrow = pa.decimal128(int(found.group(1)), int(found.group(2)))
        return PgType(1700, -1, pg_type, arrow, "cast")
    if pg_type.endswith("[]"):
        element = _LIST_ELEMENTS.get(re.sub(r"\(\d+\)$", "", pg_type[:-2]))
        if element is not None:
            kind = "list_text" if pa.types.is_string(element) else "list"
            return PgType(0, -1, pg_type, pa.list_(element), kind)
    return None


def can_be_text(pg_type: str) -> bool:
    """Whether a batch may carry a column of ``pg_type`` as text (docs/postgres-source.md)."""
    return native_type(pg_type) is not None


def held_natively(field: pa.Field, pg_type: str | None = None) -> PgType | None:
    """The native PgType of a column ``field`` holds in that native form although a value of
    its Postgres type (``pg_type``, else the field's metadata) may have none: a target reads
    such a column back through its text (:func:`to_native`). None otherwise."""
    if pg_type is None:
        name = (field.metadata or {}).get(b"pg_type")
        pg_type = name.decode() if name is not None else None
    native = native_type(pg_type) if pg_type is not None else None
    if native is None or _plain(native.arrow) != _plain(field.type):
        return None
    return native


def _plain(t: pa.DataType) -> pa.DataType:
    """``t`` with Polars' choices undone (large strings and lists, nanosecond times)."""
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_plain(t.value_type))
    if pa.types.is_time(t):
        return pa.time64("us")
    return t


def carried(field: pa.Field) -> PgType | None:
    """The column's native PgType when this batch carries it as text, else None."""
    name = (field.metadata or {}).get(b"pg_type")
    if name is None or not is_text(field.type):
        return None
    return native_type(name.decode())


def to_native(
    values: pa.Array | pa.ChunkedArray,
    type_: PgType,
) -> tuple[pa.Array, pa.Array]:
    """``values`` (Postgres text) in ``type_``'s Arrow type, and a boolean mask of the values
    that have none (null in the first array). Vectorized: the source's converter on the
    whole column, then, when some value is beyond it, on the others."""
    from syncengine.sources.postgres.columns import to_arrow

    text = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    text = text.cast(pa.string())
    none = pa.array([False] * len(text), pa.bool_())
    native = to_arrow(text, type_, quiet=True)
    if not is_text(native.type):
        return native, none
    beyond = pc.fill_null(pc.match_substring_regex(text, _NO_NATIVE[type_.kind]), False)
    native = to_arrow(pc.if_else(beyond, pa.scalar(None, pa.string()), text), type_, quiet=True)
    if not is_text(native.type):
        return native, beyond
    # a value beyond the converter that the pattern does not know: no row is trusted
    return pa.nulls(len(text), type_.arrow), pc.is_valid(text)


def restore(
    text: pa.Array,
    field: pa.Field,
    type_: PgType,
) -> tuple[pa.Field, pa.Array]:
    """A column a target read back as Postgres text (:func:`held_natively`): in ``field``'s
    native type, or, when a value has none, the text itself, ``pg_type`` in the field's
    metadata: the form a source batch holding that value carries the column in."""
    native, beyond = to_native(text, type_)
    if pc.any(beyond).as_py():
        meta = {**(field.metadata or {}), b"pg_type": type_.name.encode()}
        return field.with_type(pa.string()).with_metadata(meta), text
    return field, native.cast(field.type)
