"""Arrow table → BSON-ready documents, for the Mongo target.

Arrow alone cannot say that a string column holds ObjectIds, UUIDs or JSON, so the field
metadata decides: ``bson_type`` (set by :mod:`syncengine.codecs.bson_arrow` when the data came
from Mongo) or ``pg_type`` (set by the Postgres source). Without metadata the Arrow type decides.

==========================================  =============================================
Arrow field                                 BSON value
==========================================  =============================================
string, ``bson_type=objectId``              ObjectId
string/binary(16)/uuid, ``bson_type=uuid``  UUID, binary subtype 4
or ``pg_type=uuid``
string, ``pg_type`` json / jsonb            sub-document / array (``json.loads``)
string, ``bson_type=json``                  the value its extended JSON describes
string, ``bson_type=decimal``; decimal      Decimal128 (exact; text when > 34 digits)
int64 / uint*                               int64
timestamp (any tz)                          datetime (UTC; naive is taken as UTC)
date                                        datetime at midnight UTC
time                                        ISO text ``HH:MM:SS[.ffffff]``
duration                                    float seconds
list / struct / map                         array / sub-document / sub-document
==========================================  =============================================

Dotted column names stay single keys here; splitting ``customer.email`` into a sub-document is
the mapping layer's job.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import uuid as _uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, DecimalException
from typing import Any

import pyarrow as pa
from bson import Binary, Decimal128, Int64, ObjectId, json_util
from bson.binary import UuidRepresentation

from syncengine.codecs import fast, pg_temporal
from syncengine.codecs.pg_temporal import PY_MAX_US, PY_MIN_US

Convert = Callable[[Any], Any]

# UUIDs in extended JSON load as Binary subtype 4: encodable whatever the client's UUID setting
_JSON_OPTIONS = json_util.JSONOptions(
    uuid_representation=UuidRepresentation.UNSPECIFIED, tz_aware=True
)


def arrow_to_documents(
    table: pa.Table, omit: Mapping[str, Sequence[bool] | pa.Array | pa.ChunkedArray] | None = None
) -> list[dict[str, Any]]:
    """One dict per row, values converted per the table above.

    ``omit`` maps a column to a mask; where it is true the field is left out of that document
    (a value the source did not send is absent, never null).
    """
    names = table.column_names
    rows = [
        dict(zip(names, values, strict=True))
        for values in zip(*arrow_to_columns(table), strict=True)
    ]
    for name, mask in (omit or {}).items():
        flags = mask.to_pylist() if isinstance(mask, pa.Array | pa.ChunkedArray) else mask
        for row, flag in zip(rows, flags, strict=True):
            if flag:
                row.pop(name, None)
    return rows


def arrow_to_columns(table: pa.Table) -> list[list[Any]]:
    """The BSON values of each column (the values :func:`arrow_to_documents` puts in its
    documents), for callers that assemble documents themselves."""
    return [column_values(table.schema.field(i), table.column(i)) for i in range(table.num_columns)]


def column_values(field: pa.Field, column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """One column's BSON values. The common scalar types are converted a column at a time
    (:mod:`syncengine.codecs.fast`); the rest value by value with :func:`converter`."""
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column], column.type)
    if _date_or_us_stamp(field.type) and not pg_temporal.is_ordinary(column):
        return _bson_dates(column)
    if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
        field = field.with_type(pa.timestamp("us", tz=field.type.tz))
        column = column.cast(field.type, safe=False)
    kind, _type = _kind(field)
    if kind is not None and not pa.types.is_dictionary(field.type):
        decoded = fast.column(kind, column)
        if decoded is not None:
            return decoded
    values: list[Any] = column.to_pylist()
    convert = converter(field)
    if convert is None:
        return values
    return [None if v is None else convert(v) for v in values]


def _kind(field: pa.Field) -> tuple[str | None, pa.DataType]:
    """Which conversion a field's values need (see the table above), and its value type."""
    meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
    bson_type, pg_type = meta.get("bson_type"), meta.get("pg_type")
    type_ = field.type
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
    if bson_type == "objectId":
        return "objectId", type_
    if bson_type == "uuid" or pg_type == "uuid" or isinstance(type_, pa.UuidType):
        return "uuid", type_
    if bson_type == "json":
        return "bson_json", type_
    if pg_type in ("json", "jsonb") and _is_text(type_):
        return "json", type_
    if pg_type and _is_text(type_):  # a Postgres value its Arrow type could not hold
        if _DECIMAL_TYPE.fullmatch(pg_type):
            return "decimal", type_  # NaN in numeric(p,s): Decimal128 NaN
        if pg_type.rstrip("[]") in _NUMBER_ELEMENTS and pg_type.endswith("[]"):
            return "pg_number_array", type_
    if bson_type == "decimal" or pa.types.is_decimal(type_):
        return "decimal", type_
    if pa.types.is_int64(type_) or pa.types.is_unsigned_integer(type_):
        return "int64", type_
    if pa.types.is_timestamp(type_) and type_.tz is not None:
        return "timestamp_tz", type_
    for kind, test in _NESTED_KINDS:
        if test(type_):
            return kind, type_
    return None, type_


_NESTED_KINDS = (
    ("date", pa.types.is_date),
    ("time", pa.types.is_time),
    ("duration", pa.types.is_duration),
    ("struct", pa.types.is_struct),
    ("list", lambda t: pa.types.is_list(t) or pa.types.is_large_list(t)),
    ("list", lambda t: pa.types.is_fixed_size_list(t) or pa.types.is_list_view(t)),
    ("map", pa.types.is_map),
)


def converter(field: pa.Field) -> Convert | None:
    """How to turn one Python value of ``field`` into its BSON value (None: as it is)."""
    kind, type_ = _kind(field)
    if kind == "objectId":
        return ObjectId
    if kind == "uuid":
        return _to_uuid
    if kind == "bson_json":
        return lambda v: json_util.loads(v, json_options=_JSON_OPTIONS)
    if kind == "json":
        return json.loads
    if kind == "decimal":
        return _to_decimal128
    if kind == "pg_number_array":
        return _number_array
    if kind == "int64":
        return _to_int64
    if kind == "timestamp_tz":
        return lambda v: v.astimezone(_dt.UTC)
    if kind == "date":
        return lambda v: _dt.datetime.combine(v, _dt.time(), tzinfo=_dt.UTC)
    if kind == "time":
        return lambda v: v.isoformat()
    if kind == "duration":
        return lambda v: v.total_seconds()
    if kind == "struct":
        return _struct_converter(type_)
    if kind == "list":
        return _list_converter(type_.value_field)
    if kind == "map":
        value_convert = converter(type_.item_field) or _identity
        return lambda v: {str(k): _maybe(value_convert, x) for k, x in v}
    return None


_DECIMAL_TYPE = re.compile(r"numeric\(\d+,\d+\)")
_NUMBER_ELEMENTS = {"smallint", "integer", "bigint", "real", "double precision"}
_NULL_WORD = re.compile(r"\bNULL\b")


def _number_array(text: str) -> Any:
    """A multi-dimensional number array's text (``{{1,2},{3,NULL}}``) as nested arrays; one
    with explicit bounds (``[0:1]={1,2}``) stays text, which alone keeps the bounds."""
    if text.startswith("["):
        return text
    return json.loads(_NULL_WORD.sub("null", text.replace("{", "[").replace("}", "]")))


def _date_or_us_stamp(t: pa.DataType) -> bool:
    return bool(pa.types.is_date32(t) or (pa.types.is_timestamp(t) and t.unit == "us"))


def _bson_dates(column: pa.ChunkedArray) -> list[Any]:
    """A date column holding values beyond Python's years 1-9999 (Postgres infinity, BC):
    those values as their Postgres text (``infinity``, ``4713-01-01 BC``), the others as BSON
    dates like everywhere else. Not the ends of the BSON date range: MongoDB-compatible
    servers and drivers that decode dates as Python datetimes refuse them, and the text says
    what it is."""
    text = pg_temporal.to_text(column).to_pylist()
    if pa.types.is_date32(column.type):
        micros = [
            None if d is None else d * 86_400_000_000 for d in column.cast(pa.int32()).to_pylist()
        ]
    else:
        micros = column.cast(pa.int64()).to_pylist()
    out: list[Any] = []
    for us, shown in zip(micros, text, strict=True):
        if us is None:
            out.append(None)
        elif PY_MIN_US <= us <= PY_MAX_US:
            out.append(_EPOCH + _dt.timedelta(microseconds=us))
        else:
            out.append(shown)
    return out


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def _identity(value: Any) -> Any:
    return value


def _maybe(convert: Convert, value: Any) -> Any:
    return None if value is None else convert(value)


def _is_text(type_: pa.DataType) -> bool:
    return bool(pa.types.is_string(type_) or pa.types.is_large_string(type_))


def _to_uuid(value: Any) -> Binary:
    if isinstance(value, _uuid.UUID):
        return Binary.from_uuid(value)
    if isinstance(value, bytes):
        return Binary(value, 4)
    return Binary.from_uuid(_uuid.UUID(str(value)))


def _to_decimal128(value: Any) -> Decimal128 | str:
    try:
        return Decimal128(value if isinstance(value, Decimal) else Decimal(str(value)))
    except (DecimalException, ValueError):  # Inexact: > 34 digits
        return str(value)  # more digits than Decimal128 holds: keep the exact text


def _to_int64(value: int) -> Int64 | Decimal128:
    return Int64(value) if value < 2**63 else Decimal128(Decimal(value))


def _struct_converter(type_: pa.StructType) -> Convert:
    plan = [(type_.field(i).name, converter(type_.field(i))) for i in range(type_.num_fields)]
    if all(c is None for _, c in plan):
        return _identity

    def convert(value: dict[str, Any]) -> dict[str, Any]:
        return {
            name: (value[name] if c is None or value[name] is None else c(value[name]))
            for name, c in plan
        }

    return convert


def _list_converter(item: pa.Field) -> Convert:
    c = converter(item)
    if c is None:
        return _identity
    return lambda value: [None if x is None else c(x) for x in value]
