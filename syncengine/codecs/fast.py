"""Column-at-a-time Arrow → BSON conversion of the common scalar types.

Each function returns exactly the values :func:`syncengine.codecs.arrow_bson.converter` would
produce value by value, or None when the column is not one it handles (then the caller converts
value by value, so odd values keep their exact behaviour, errors included). The work that is per
value in the generic path (a ``Decimal`` and its BID encoding, a ``uuid.UUID``, a time-zone
conversion, a ``json.loads`` call) is done here on whole columns.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from bson import Binary, Decimal128, Int64

Column = Callable[[pa.ChunkedArray], list[Any] | None]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_UNIT_MICROSECONDS = {"s": 1_000_000, "ms": 1_000, "us": 1}
_UUID_TEXT = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
#: Decimal128 holds 34 digits; BID layout: sign bit, 14-bit exponent (bias 6176), coefficient
_DECIMAL128_DIGITS = 34
_EXPONENT_BIAS = 6176
_SIGN = 1 << 63


def column(kind: str, values: pa.ChunkedArray) -> list[Any] | None:
    """The BSON values of ``values`` converted as ``kind`` (see ``arrow_bson._kind``)."""
    handler = _HANDLERS.get(kind)
    return None if handler is None else handler(values)


def _with_nulls(values: pa.ChunkedArray, convert: Callable[[pa.Array], list[Any]]) -> list[Any]:
    """``convert`` applied to the non-null values, None where a value is null."""
    if not values.null_count:
        return convert(values.combine_chunks())
    valid = values.is_valid()
    converted = iter(convert(values.filter(valid).combine_chunks()))
    return [next(converted) if ok else None for ok in valid.to_pylist()]


def _int64(values: pa.ChunkedArray) -> list[Any] | None:
    if pa.types.is_uint64(values.type):
        return None  # may exceed int64: Decimal128 value by value
    return _with_nulls(values, lambda a: list(map(Int64, a.to_pylist())))


def _timestamp_tz(values: pa.ChunkedArray) -> list[Any] | None:
    """Aware UTC datetimes, built from the integer instants: Arrow's own conversion of aware
    timestamps goes through a time zone object per value."""
    scale = _UNIT_MICROSECONDS.get(values.type.unit)
    if scale is None:
        return None

    def convert(array: pa.Array) -> list[Any]:
        delta = _dt.timedelta
        return [_EPOCH + delta(microseconds=v * scale) for v in array.cast(pa.int64()).to_pylist()]

    try:
        return _with_nulls(values, convert)
    except OverflowError:
        return None  # outside Python's datetime range: the generic path reports it


def _decimal(values: pa.ChunkedArray) -> list[Any] | None:
    """Decimal128 straight from Arrow's unscaled 128-bit integers: value = unscaled × 10^-scale
    is exactly the BID coefficient and exponent (the same bits ``Decimal128(Decimal)`` makes)."""
    type_ = values.type
    if not pa.types.is_decimal128(type_) or type_.precision > _DECIMAL128_DIGITS:
        return None
    exponent = (_EXPONENT_BIAS - type_.scale) << 49

    def convert(array: pa.Array) -> list[Any]:
        magnitude = pc.abs(array)
        negative = pc.less(array, pa.scalar(0, type_)).to_pylist()
        buffer = memoryview(magnitude.buffers()[1]).cast("Q")
        words = buffer[2 * magnitude.offset : 2 * (magnitude.offset + len(magnitude))].tolist()
        # Decimal128 takes its (high, low) words; pymongo types the tuple as decimal's
        # (sign, digits, exponent), hence the ignore
        return [
            Decimal128((high | exponent | (_SIGN if minus else 0), low))  # type: ignore[arg-type]
            for low, high, minus in zip(words[0::2], words[1::2], negative, strict=True)
        ]

    return _with_nulls(values, convert)


def _uuid(values: pa.ChunkedArray) -> list[Any] | None:
    """Subtype-4 binaries from canonical UUID text (``8-4-4-4-12`` hex digits)."""
    if not pa.types.is_string(values.type) and not pa.types.is_large_string(values.type):
        return None
    present = values.drop_null()
    if len(present) and not pc.all(pc.match_substring_regex(present, _UUID_TEXT)).as_py():
        return None  # other spellings (braces, urn:uuid:, no dashes): value by value

    def convert(array: pa.Array) -> list[Any]:
        digits = pc.replace_substring(array, "-", "").to_pylist()
        return [Binary(bytes.fromhex(h), 4) for h in digits]

    return _with_nulls(values, convert)


def _json(values: pa.ChunkedArray) -> list[Any] | None:
    """Postgres json/jsonb text, parsed in one call for the column (Postgres only hands out
    valid JSON texts; should one not parse, the values are parsed one by one)."""

    def convert(array: pa.Array) -> list[Any]:
        texts = array.to_pylist()
        parsed: list[Any] = json.loads("[" + ",".join(texts) + "]")
        if len(parsed) != len(texts):
            raise ValueError("a value is not one JSON text")
        return parsed

    try:
        return _with_nulls(values, convert)
    except ValueError:
        return None


_HANDLERS: dict[str, Column] = {
    "int64": _int64,
    "timestamp_tz": _timestamp_tz,
    "decimal": _decimal,
    "uuid": _uuid,
    "json": _json,
}
