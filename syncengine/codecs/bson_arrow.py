"""BSON documents ↔ Arrow tables, shared by the Mongo source (BSON → Arrow) and target (back).

Decoding is column-oriented: documents are split into one value list per top-level field, each
column's type is the union of its values (:mod:`syncengine.codecs.bson_types`), and Arrow arrays
are built bottom-up (struct children and list items are gathered and built as arrays, then
wrapped), so no per-document dict is rebuilt. Every Arrow field carries its BSON type in the field
metadata key ``bson_type`` so the reverse direction (and a Postgres target choosing column types)
knows that a ``string`` column holds ObjectIds or UUIDs.

Arrow representation of each BSON type:

=============  ===============================  =====================================
BSON           Arrow                            ``bson_type``
=============  ===============================  =====================================
ObjectId       string (24 hex chars)            objectId
string         string                           string
int32 / int64  int32 / int64                    int / long
double         float64                          double
Decimal128     decimal128(38, s), exact;        decimal
               string when it needs > 38 digits
               or holds NaN/Infinity
bool           bool                             bool
datetime       timestamp[ms, UTC]               date
binary         binary                           binData
UUID (sub. 4)  string (canonical 8-4-4-4-12)    uuid
null           null                             null
document       struct                           object
array          list                             array
other/conflict string, relaxed extended JSON    json
=============  ===============================  =====================================

Decimal fields also carry ``pg_type=numeric``: Decimal128 values have no fixed scale, so a SQL
target should create an unconstrained ``numeric`` instead of the scale of the first batch.

Missing and null differ: :class:`Decoded.missing` has, for each top-level field absent from at
least one document, a boolean mask that is true where it was absent (the source turns it into
``_unsent.<field>``). Inside sub-documents a missing field reads as null.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import pyarrow as pa
from bson import Binary, CodecOptions, Int64, decode_all, json_util
from bson.binary import UuidRepresentation
from bson.codec_options import DatetimeConversion
from bson.raw_bson import RawBSONDocument

from syncengine.codecs.arrow_bson import arrow_to_documents, column_values
from syncengine.codecs.bson_types import (
    JSON,
    NULL,
    NUMBERS,
    Node,
    conflicts,
    field_columns,
    infer_column,
    lift_json,
)
from syncengine.codecs.decimals import decimal_array

__all__ = [
    "DECODE_OPTIONS",
    "Decoded",
    "arrow_to_documents",
    "decode_documents",
    "documents_to_arrow",
    "missing_masks",
    "retype_across",
]

#: How raw BSON is decoded: naive datetimes (BSON dates are UTC; Arrow's UTC timestamps and
#: extended JSON read a naive one as UTC, and an aware one costs the decoder a time-zone
#: conversion each, about as much as decoding the rest of a typical document), subtype-4
#: binaries kept as ``Binary`` (their text form is built straight from the bytes, cheaper than
#: a ``uuid.UUID`` each), and datetimes outside Python's range kept (as ``DatetimeMS``, carried
#: as JSON) instead of raising.
DECODE_OPTIONS: CodecOptions[dict[str, Any]] = CodecOptions(
    tz_aware=False,
    uuid_representation=UuidRepresentation.UNSPECIFIED,
    datetime_conversion=DatetimeConversion.DATETIME_AUTO,
)
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
log = logging.getLogger("syncengine.codecs")
_JSON_OPTIONS = json_util.JSONOptions(
    json_mode=json_util.JSONMode.RELAXED,
    uuid_representation=UuidRepresentation.STANDARD,
    tz_aware=True,
)
_MAX_DECIMAL_DIGITS = 38

Documents = Sequence[dict[str, Any]] | Iterable[bytes | memoryview | RawBSONDocument]


@dataclass(frozen=True)
class Decoded:
    table: pa.Table
    warnings: list[str] = field(default_factory=list)
    #: top-level field -> bool mask, true where the document did not have the field
    missing: dict[str, pa.Array] = field(default_factory=dict)


def documents_to_arrow(docs: Documents) -> tuple[pa.Table, list[str]]:
    """Union-schema Arrow table of ``docs`` and warnings for fields that fell back to JSON."""
    decoded = decode_documents(docs)
    return decoded.table, decoded.warnings


def missing_masks(docs: Documents) -> dict[str, pa.Array]:
    """Per top-level field absent from some document: mask true where it was absent."""
    return decode_documents(docs).missing


def as_dicts(docs: Documents) -> list[dict[str, Any]]:
    """Decode raw BSON batches (``find_raw_batches``) / RawBSONDocuments; dicts pass through."""
    out: list[dict[str, Any]] = []
    for item in docs:
        if isinstance(item, dict):
            out.append(item)
        elif isinstance(item, RawBSONDocument):
            out.extend(decode_all(item.raw, DECODE_OPTIONS))
        else:
            out.extend(decode_all(bytes(item), DECODE_OPTIONS))
    return out


def decode_documents(docs: Documents) -> Decoded:
    """Arrow table, fallback warnings and missing-field masks of ``docs`` in one pass."""
    rows = as_dicts(docs)
    n = len(rows)
    present: dict[str, bytearray] = {}
    found = field_columns(rows)  # documents of one shape: transposed in C, none missing
    if found is not None:
        values = found
    else:
        values = {}
        for i, doc in enumerate(rows):
            for name, value in doc.items():
                column = values.get(name)
                if column is None:
                    column = values[name] = [None] * n
                    present[name] = bytearray(n)
                column[i] = value
                present[name][i] = 1
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    warnings: list[str] = []
    for name, column in values.items():
        node = infer_column(column)
        for path in conflicts(column, node, name):
            warnings.append(
                f"field {path}: conflicting BSON types across documents; "
                "carried as extended-JSON text (bson_type=json)"
            )
        array, fld = build(name, lift_json(node), column)
        arrays.append(array)
        fields.append(fld)
    missing = {
        name: pa.array([not flag for flag in mask], pa.bool_())
        for name, mask in present.items()
        if mask.count(1) != n
    }
    if not fields:  # documents without fields still count as rows
        return Decoded(pa.table({"": pa.nulls(n)}).drop([""]), warnings, missing)
    table = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    return Decoded(table, warnings, missing)


def _widens(bson_types: set[str]) -> bool:
    """Whether Polars may join a field of these BSON types without a decode, widening them as
    :func:`~syncengine.codecs.bson_types.unify` would: numbers only, and no long beside a
    double (a long beyond 2^53 must not become one: the values decide)."""
    return bson_types <= NUMBERS and not {"long", "double"} <= bson_types


def retype_across(tables: Sequence[pa.Table], *, warn: bool = True) -> list[pa.Table]:
    """Decoded batches of one collection about to be joined into one (a change group): a
    field whose BSON typing differs between them is typed again as if all their documents had
    been decoded together. An int in one batch and a string in another become extended-JSON
    text in both, as within one batch; a sub-document with other fields, a union struct; a
    field carried as JSON in one batch, JSON in all. Joined as they were, Polars turned the
    int into the string ``"1"`` and JSON text into a string no JSON parser reads.

    Only fields every batch types with ``bson_type`` (Mongo's) and that differ in more than
    width (:func:`_widens`) are touched; their values are decoded back to BSON and built
    again (:func:`build`), a rare path. Batches without such a field are returned as they are.
    ``warn``: log each conflict (once per join: :func:`joined_fields` does not).
    """
    out = list(tables)
    for name in _retyped(tables):
        holders = [i for i, table in enumerate(out) if name in table.column_names]
        values: list[Any] = []
        for i in holders:
            column = out[i].column(name)
            field_ = out[i].schema.field(name)
            if pa.types.is_null(field_.type):
                values.extend([None] * len(column))
            else:
                values.extend(column_values(field_, column))
        node = infer_column(values)
        for path in conflicts(values, node, name) if warn else ():
            log.warning(
                "field %s: conflicting BSON types across batches; carried as extended-JSON "
                "text (bson_type=json)",
                path,
            )
        array, built = build(name, lift_json(node), values)
        offset = 0
        for i in holders:
            table = out[i]
            n = table.num_rows
            index = table.schema.get_field_index(name)
            out[i] = table.set_column(index, built, array.slice(offset, n))
            offset += n
    return out


def joined_fields(tables: Sequence[pa.Table]) -> dict[str, pa.Field]:
    """The fields :func:`retype_across` types again, as it types them (their values decide:
    a long beside a double is a double, or JSON when a double cannot hold it exactly)."""
    names = _retyped(tables)
    if not names:
        return {}
    holding = [t.select([n for n in names if n in t.column_names]) for t in tables]
    fields: dict[str, pa.Field] = {}
    for table in retype_across(holding, warn=False):
        for f in table.schema:
            fields.setdefault(f.name, f)
    return fields


def _retyped(tables: Sequence[pa.Table]) -> list[str]:
    """Fields every batch that types them types with ``bson_type`` (Mongo's), differently
    beyond numeric width (:func:`_widens`)."""
    kinds: dict[str, set[tuple[pa.DataType, bytes]]] = {}
    for table in tables:
        for f in table.schema:
            bson_type = (f.metadata or {}).get(b"bson_type")
            if bson_type is None:
                kinds.setdefault(f.name, set()).add((f.type, b""))
            elif not pa.types.is_null(f.type):
                kinds.setdefault(f.name, set()).add((f.type, bson_type))
    return [
        name
        for name, seen in kinds.items()
        if len(seen) > 1
        and all(bson_type for _, bson_type in seen)
        and not _widens({bson_type.decode() for _, bson_type in seen})
    ]


def build(name: str, node: Node, values: list[Any]) -> tuple[pa.Array, pa.Field]:
    """An Arrow array (and its field, with ``bson_type``) for ``values`` of type ``node``."""
    kind = node[0]
    if kind == "struct" and node[1]:
        columns = field_columns(values)
        if columns is None or len(columns) != len(node[1]):
            columns = {
                c: [v.get(c) if isinstance(v, dict) else None for v in values] for c in node[1]
            }
        children = [build(child, sub, columns[child]) for child, sub in node[1].items()]
        mask = pa.array([v is None for v in values], pa.bool_())
        array = pa.StructArray.from_arrays(
            [c[0] for c in children], fields=[c[1] for c in children], mask=mask
        )
        return array, _field(name, array.type, "object")
    if kind == "list":
        offsets = [0, *accumulate(0 if v is None else len(v) for v in values)]
        items = [item for v in values if v is not None for item in v]
        item_array, item_field = build("item", node[1], items)
        mask = pa.array([v is None for v in values], pa.bool_())
        array = pa.ListArray.from_arrays(
            pa.array(offsets, pa.int32()), item_array, type=pa.list_(item_field), mask=mask
        )
        return array, _field(name, array.type, "array")
    if kind == "struct" or node == JSON:  # an empty sub-document has no Arrow struct form
        text = [None if v is None else to_json(v) for v in values]
        return pa.array(text, pa.string()), _field(name, pa.string(), "json")
    if node == NULL:
        return pa.nulls(len(values)), _field(name, pa.null(), "null")
    return _leaf(name, kind, values)


_PLAIN = {
    "string": pa.string(),
    "int": pa.int32(),
    "long": pa.int64(),
    "bigLong": pa.int64(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.timestamp("ms", tz="UTC"),
}


#: node kinds whose BSON type has another name
_BSON_TYPE = {"bigLong": "long"}


def _leaf(name: str, kind: str, values: list[Any]) -> tuple[pa.Array, pa.Field]:
    type_ = _PLAIN.get(kind)
    if type_ is not None:
        return pa.array(values, type_), _field(name, type_, _BSON_TYPE.get(kind, kind))
    if kind == "objectId":
        text = [None if v is None else str(v) for v in values]
        return pa.array(text, pa.string()), _field(name, pa.string(), kind)
    if kind == "uuid":
        text = [None if v is None else _uuid_text(v) for v in values]
        return pa.array(text, pa.string()), _field(name, pa.string(), kind)
    if kind == "binData":
        raw = [None if v is None else bytes(v) for v in values]
        return pa.array(raw, pa.binary()), _field(name, pa.binary(), kind)
    if kind == "decimal":
        return _decimal(name, values)
    raise AssertionError(f"unhandled BSON kind {kind}")


def _uuid_text(value: Any) -> str:
    if not isinstance(value, Binary | bytes):
        return str(value)  # uuid.UUID
    h = bytes(value).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _decimal(name: str, values: list[Any]) -> tuple[pa.Array, pa.Field]:
    """Exact: decimal128(38, s) with the batch's largest scale (the precision is fixed so the
    batches of one collection agree on it), or decimal text when Arrow cannot hold it."""
    array = decimal_array(values)
    return array, _field(name, array.type, "decimal")


def to_json(value: Any) -> str:
    """Relaxed extended JSON: readable, and ``json_util.loads`` gives the BSON value back.

    Relaxed mode writes an int64 as a plain number, which reads back as int32 when it fits;
    such an int64 is written in its canonical form (``{"$numberLong": "7"}``) instead, so a
    Mongo target gets the same BSON type back."""
    return json_util.dumps(_small_longs(value), json_options=_JSON_OPTIONS)


def _small_longs(value: Any) -> Any:
    """``value`` with every int64 that relaxed JSON would read back as int32 made canonical."""
    if isinstance(value, dict):
        return {k: _small_longs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_small_longs(v) for v in value]
    if isinstance(value, Int64) and _INT32_MIN <= value <= _INT32_MAX:
        return {"$numberLong": str(int(value))}
    return value


def _field(name: str, type_: pa.DataType, bson_type: str) -> pa.Field:
    metadata = {"bson_type": bson_type}
    if bson_type == "decimal":
        # Decimal128 has no fixed scale: a SQL target should not pin this batch's scale
        metadata["pg_type"] = "numeric"
    elif bson_type == "json":
        # relaxed extended JSON is JSON: a SQL target keeps it queryable as jsonb
        metadata["pg_type"] = "jsonb"
    return pa.field(name, type_, metadata=metadata)
