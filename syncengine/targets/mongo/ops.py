"""Rows ↔ documents for the Mongo target: ``_id`` from the key, dotted names nested, and one
write operation per row (building driver operations is inherently per row).

``_id``: a key that is the single column ``_id`` is used as it is; any other key becomes the
``_id`` — its value for a single-column key, a sub-document ``{k1: v1, k2: v2}`` (key order)
for a composite one — and the key columns are stored as ordinary fields too.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from pymongo import DeleteOne, ReplaceOne, UpdateOne

from syncengine.changes import (
    OP_DELETE,
    OP_INSERT,
    OP_READ,
    OP_TRUNCATE,
    UNSENT_PREFIX,
    is_data_column,
)
from syncengine.codecs.bson_arrow import arrow_to_documents, decode_documents
from syncengine.targets.base import TableSpec

Op = ReplaceOne | UpdateOne | DeleteOne


def doc_id(key: tuple[str, ...], row: dict[str, Any]) -> Any:
    if key == ("_id",) or len(key) == 1:
        return row[key[0]]
    return {k: row[k] for k in key}


def nest(row: dict[str, Any]) -> dict[str, Any]:
    """``{"customer.email": x}`` → ``{"customer": {"email": x}}``."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if "." not in name:
            out[name] = value
            continue
        parts = name.split(".")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def key_ids(spec: TableSpec, keys: pa.Table) -> list[Any]:
    """The ``_id`` of each key row, with the key columns' BSON conversions."""
    fields = [
        spec.schema.field(k) if k in spec.schema.names else keys.schema.field(k) for k in spec.key
    ]
    table = pa.Table.from_arrays(
        [keys.column(k).cast(f.type) for k, f in zip(spec.key, fields, strict=True)],
        schema=pa.schema(fields),
    )
    return [doc_id(spec.key, row) for row in arrow_to_documents(table)]


def with_spec_metadata(rows: pa.Table, spec: TableSpec) -> pa.Table:
    """The spec's field metadata (``bson_type``, ``pg_type``) on the batch's columns: the BSON
    conversion depends on it, and batches do not always carry it."""
    fields = []
    for field in rows.schema:
        if field.name in spec.schema.names:
            meta = {**(field.metadata or {}), **(spec.schema.field(field.name).metadata or {})}
            field = field.with_metadata(meta)
        fields.append(field)
    return rows.cast(pa.schema(fields))


def build_ops(spec: TableSpec, data: pa.Table) -> tuple[bool, list[Op], list[int]]:
    """(truncate?, operations, row index of each operation) for a compacted batch."""
    ops_col = data.column("_op").to_pylist()
    truncate = OP_TRUNCATE in ops_col
    names = [n for n in data.column_names if is_data_column(n)]
    rows = with_spec_metadata(data.select(names), spec)
    omit = {
        n: data.column(UNSENT_PREFIX + n).fill_null(False)
        for n in names
        if UNSENT_PREFIX + n in data.column_names
    }
    docs = arrow_to_documents(rows, omit)
    key = spec.key
    ops: list[Op] = []
    index: list[int] = []
    for i, (op, doc) in enumerate(zip(ops_col, docs, strict=True)):
        if op == OP_TRUNCATE:
            continue
        _id = doc_id(key, doc)
        if op == OP_DELETE:
            ops.append(DeleteOne({"_id": _id}))
        elif op in (OP_INSERT, OP_READ):
            body = {k: v for k, v in doc.items() if k != "_id"}
            ops.append(ReplaceOne({"_id": _id}, {"_id": _id, **nest(body)}, upsert=True))
        else:
            sets = {k: v for k, v in doc.items() if k != "_id"}
            update = {"$set": sets} if sets else {"$setOnInsert": {"_id": _id}}
            ops.append(UpdateOne({"_id": _id}, update, upsert=True))
        index.append(i)
    return truncate, ops, index


def _lookup(doc: dict[str, Any], name: str) -> Any:
    if name in doc or "." not in name:
        return doc.get(name)
    node: Any = doc
    for part in name.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def documents_to_rows(spec: TableSpec, docs: list[dict[str, Any]]) -> pa.Table:
    """Documents read back as a table of ``spec``'s columns (dotted names looked up nested)."""
    flat = [{f.name: _lookup(d, f.name) for f in spec.schema} for d in docs]
    decoded = decode_documents(flat).table if flat else None
    arrays = []
    for field in spec.schema:
        if decoded is None or field.name not in decoded.column_names:
            arrays.append(pa.nulls(len(flat), field.type))
            continue
        column = decoded.column(field.name)
        try:
            arrays.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            arrays.append(pa.array(column.to_pylist(), field.type, from_pandas=False))
    return pa.Table.from_arrays(arrays, schema=spec.schema)
