"""A Mongo field's typed values as the extended-JSON text a field carried as JSON holds.

A field whose BSON types conflict in a batch is carried as relaxed extended JSON
(:func:`syncengine.codecs.bson_arrow.to_json`), and a SQL target gives it a ``jsonb`` column.
A later batch whose documents agree on one type carries the same field typed (a string, an
int, an ObjectId …). Written into that ``jsonb`` column as they are, the string ``"4"`` read as
the number 4 (the row of the document whose ``_id`` is the int 4, overwritten), ``"abc"`` was
refused, and an ObjectId's hex was neither. This module gives such a column the text the
JSON-carried batch would have given the same values, so each value is written, and matched
as a key, one way whatever batch it came in.

The common types are converted a column at a time; dates, UUIDs, binary and decimals value by
value through their BSON values (the same path as a conflict's values: a rare one).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from syncengine.codecs.pg_text import is_text

#: ``bson_type``s whose values are JSON already (or, for documents and arrays, written as
#: JSON by the target's own encoder) or hold nothing
AS_THEY_ARE = frozenset({"json", "object", "array", "null"})

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


#: what a key's JSON column needs from a document or array too: its JSON text (a struct
#: key cannot be sent as a key parameter, nor cast to the text the sweep compares)
_KEY_AS_THEY_ARE = frozenset({"json", "null"})


def needs_json(field: pa.Field, key: bool = False) -> bool:
    """Whether ``field`` is a typed Mongo field (``bson_type`` other than JSON's); for a
    ``key`` field, a document or array too."""
    bson_type = (field.metadata or {}).get(b"bson_type")
    kept = _KEY_AS_THEY_ARE if key else AS_THEY_ARE
    return bson_type is not None and bson_type.decode() not in kept


def is_json(field: pa.Field) -> bool:
    """Whether ``field`` is a Mongo field carried as JSON text."""
    return (field.metadata or {}).get(b"bson_type") == b"json"


def canonical(text: pa.ChunkedArray | pa.Array) -> pa.Array:
    """JSON text as Postgres prints the ``jsonb`` it parses to: object keys shorter first,
    then by their bytes; no escapes but the ones JSON needs; numbers as written, in plain
    notation. A key held in a ``jsonb`` column is compared as text by the sweep and is a
    row key in the shadow: extended JSON keeps a document's field order and escapes every
    non-ASCII character, so the same key read back would not be the same text. Value by
    value (keys only, of the rare table whose key column holds JSON)."""
    values = text.to_pylist()
    return pa.array([None if v is None else _jsonb_text(_load(v)) for v in values], pa.string())


def _load(text: str) -> Any:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def _jsonb_text(value: Any) -> str:
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: (len(kv[0].encode()), kv[0].encode()))
        inner = ", ".join(f"{_string(k)}: {_jsonb_text(v)}" for k, v in items)
        return "{" + inner + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_jsonb_text(v) for v in value) + "]"
    if isinstance(value, Decimal):  # numeric has no negative zero: -0.0 prints 0.0
        return format(abs(value) if value.is_zero() else value, "f")
    if isinstance(value, str):
        return _string(value)
    return json.dumps(value)  # true, false, null


def _string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def json_text(field: pa.Field, column: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """``column`` (of Mongo field ``field``) as the extended-JSON text of its values; nulls
    stay null."""
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column], column.type)
    bson_type = (field.metadata or {}).get(b"bson_type", b"").decode()
    t = column.type
    if bson_type == "string" and is_text(t):
        return _quoted(column)
    if bson_type == "objectId" and is_text(t):
        return _wrapped(column, '{"$oid": "', '"}')
    if bson_type == "bool" and pa.types.is_boolean(t):
        return column.cast(pa.string())
    if bson_type in ("int", "long") and pa.types.is_integer(t):
        text = column.cast(pa.string())
        if bson_type == "int":
            return text
        # an int64 relaxed JSON would read back as int32 is written canonical (to_json)
        small = pc.and_(pc.greater_equal(column, _INT32_MIN), pc.less_equal(column, _INT32_MAX))
        return pc.if_else(small, _wrapped(text, '{"$numberLong": "', '"}'), text)
    if bson_type == "double" and pa.types.is_floating(t):
        finite = pc.fill_null(pc.is_finite(column), True)
        if pc.all(finite).as_py():
            return column.cast(pa.float64()).cast(pa.string())
    return _value_by_value(field, column)


def _quoted(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Strings as JSON strings (escaped by Polars' JSON encoder)."""
    frame = pl.from_arrow(pa.table({"v": column.cast(pa.large_string())}))
    assert isinstance(frame, pl.DataFrame)
    wrapped = pl.struct(pl.col("v")).struct.json_encode()  # {"v":"…"}
    body = wrapped.str.slice(5, wrapped.str.len_chars() - 6)
    quoted = frame.select(pl.when(pl.col("v").is_null()).then(None).otherwise(body))
    return pa.chunked_array(quoted.to_series().to_arrow().cast(pa.string()))


def _wrapped(text: pa.ChunkedArray, before: str, after: str) -> pa.ChunkedArray:
    return pc.binary_join_element_wise(before, text.cast(pa.string()), after, "")


def _value_by_value(field: pa.Field, column: pa.ChunkedArray) -> pa.ChunkedArray:
    from syncengine.codecs.arrow_bson import column_values
    from syncengine.codecs.bson_arrow import to_json

    values = column_values(field, column)
    return pa.chunked_array([pa.array([None if v is None else to_json(v) for v in values])])
