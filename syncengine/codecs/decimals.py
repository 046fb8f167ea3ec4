"""Decimal128 values → an exact Arrow decimal128 array, without a ``Decimal`` per value.

``Decimal128.to_decimal()`` is slow (a decimal context per call); the IEEE 754-2008 BID bits
give sign, coefficient and exponent directly, and the Arrow array is built from the unscaled
integers. Values that do not fit (NaN, ±Infinity, > 38 digits at the common scale) make the whole
column exact decimal text instead.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pyarrow as pa
from bson import Decimal128

MAX_DIGITS = 38
_EXPONENT_BIAS = 6176
_LOW_49 = (1 << 49) - 1
_MASK_128 = (1 << 128) - 1


def _parts(value: Any) -> tuple[int, int] | None:
    """(signed coefficient, exponent), or None for NaN/Infinity."""
    if isinstance(value, Decimal128):
        bid = value.bid
        high = int.from_bytes(bid[8:], "little")
        if (high >> 61) & 3 != 3:  # the common form; the other holds huge coefficients/specials
            coefficient = ((high & _LOW_49) << 64) | int.from_bytes(bid[:8], "little")
            biased = ((high >> 49) & 0x3FFF) - _EXPONENT_BIAS
            return (-coefficient if high >> 63 else coefficient), biased
        value = value.to_decimal()
    d = value if isinstance(value, Decimal) else Decimal(value)
    if not d.is_finite():
        return None
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    coefficient = int("".join(map(str, digits)) or "0")
    return (-coefficient if sign else coefficient), exponent


def decimal_array(values: list[Any]) -> pa.Array:
    """decimal128(38, s) with the largest scale among ``values``; string when that cannot hold
    them exactly."""
    parts = [None if v is None else _parts(v) for v in values]
    present = [p for p in parts if p is not None]
    if len(present) != sum(v is not None for v in values):
        return _as_text(values)
    scale = max([0, *(-e for _, e in present)])
    if scale > MAX_DIGITS:
        return _as_text(values)
    unscaled = [None if p is None else p[0] * 10 ** (p[1] + scale) for p in parts]
    limit = 10**MAX_DIGITS
    if any(u is not None and abs(u) >= limit for u in unscaled):
        return _as_text(values)
    data = b"".join(((u or 0) & _MASK_128).to_bytes(16, "little") for u in unscaled)
    validity = None
    if any(u is None for u in unscaled):
        validity = pa.array([u is not None for u in unscaled], pa.bool_()).buffers()[1]
    type_ = pa.decimal128(MAX_DIGITS, scale)
    return pa.Array.from_buffers(type_, len(values), [validity, pa.py_buffer(data)])


def _as_text(values: list[Any]) -> pa.Array:
    text = [
        None if v is None else str(v.to_decimal() if isinstance(v, Decimal128) else Decimal(v))
        for v in values
    ]
    return pa.array(text, pa.string())
