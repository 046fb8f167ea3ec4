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
import uuid as _uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa
from bson import Binary, Decimal128, Int64, ObjectId, json_util
from bson.binary import UuidRepresentation

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
    columns = [_column_values(table.schema.field(i), table.column(i)) for i in range(len(names))]
    rows = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    for name, mask in (omit or {}).items():
        flags = mask.to_pylist() if isinstance(mask, pa.Array | pa.ChunkedArray) else mask
        for row, flag in zip(rows, flags, strict=True):
            if flag:
                row.pop(name, None)
    return rows


def _column_values(field: pa.Field, column: pa.ChunkedArray) -> list[Any]:
    if pa.types.is_timestamp(field.type) and field.type.unit == "ns":
        column = column.cast(pa.timestamp("us", tz=field.type.tz), safe=False)
    values = column.to_pylist()
    convert = converter(field)
    if convert is None:
        return values
    return [None if v is None else convert(v) for v in values]


def converter(field: pa.Field) -> Convert | None:
    """How to turn one Python value of ``field`` into its BSON value (None: as it is)."""
    meta = {k.decode(): v.decode() for k, v in (field.metadata or {}).items()}
    bson_type, pg_type = meta.get("bson_type"), meta.get("pg_type")
    type_ = field.type
    if pa.types.is_dictionary(type_):
        type_ = type_.value_type
        field = field.with_type(type_)
    if bson_type == "objectId":
        return ObjectId
    if bson_type == "uuid" or pg_type == "uuid" or isinstance(type_, pa.UuidType):
        return _to_uuid
    if bson_type == "json":
        return lambda v: json_util.loads(v, json_options=_JSON_OPTIONS)
    if pg_type in ("json", "jsonb") and _is_text(type_):
        return json.loads
    if bson_type == "decimal" or pa.types.is_decimal(type_):
        return _to_decimal128
    if pa.types.is_int64(type_) or pa.types.is_unsigned_integer(type_):
        return _to_int64
    if pa.types.is_timestamp(type_) and type_.tz is not None:
        return lambda v: v.astimezone(_dt.UTC)
    if pa.types.is_date(type_):
        return lambda v: _dt.datetime.combine(v, _dt.time(), tzinfo=_dt.UTC)
    if pa.types.is_time(type_):
        return lambda v: v.isoformat()
    if pa.types.is_duration(type_):
        return lambda v: v.total_seconds()
    if pa.types.is_struct(type_):
        return _struct_converter(type_)
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return _list_converter(type_.value_field)
    if pa.types.is_fixed_size_list(type_) or pa.types.is_list_view(type_):
        return _list_converter(type_.value_field)
    if pa.types.is_map(type_):
        value_convert = converter(type_.item_field) or _identity
        return lambda v: {str(k): _maybe(value_convert, x) for k, x in v}
    return None


def _identity(value: Any) -> Any:
    return value


def _maybe(convert: Convert, value: Any) -> Any:
    return None if value is None else convert(value)


def _is_text(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def _to_uuid(value: Any) -> Binary:
    if isinstance(value, _uuid.UUID):
        return Binary.from_uuid(value)
    if isinstance(value, bytes):
        return Binary(value, 4)
    return Binary.from_uuid(_uuid.UUID(str(value)))


def _to_decimal128(value: Any) -> Decimal128 | str:
    try:
        return Decimal128(value if isinstance(value, Decimal) else Decimal(str(value)))
    except (InvalidOperation, ValueError):
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
