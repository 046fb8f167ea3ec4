"""Rows ↔ documents for the Mongo target: ``_id`` from the key, dotted names nested, and one
write operation per row (building driver operations is inherently per row; the values are
converted a column at a time before that).

``_id``: a key that is the single column ``_id`` is used as it is; any other key becomes the
``_id`` — its value for a single-column key, a sub-document ``{k1: v1, k2: v2}`` (key order)
for a composite one — and the key columns are stored as ordinary fields too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from pymongo import DeleteOne, InsertOne, ReplaceOne, UpdateOne

from syncengine.changes import (
    OP_DELETE,
    OP_INSERT,
    OP_READ,
    OP_TRUNCATE,
    UNSENT_PREFIX,
    is_data_column,
)
from syncengine.codecs import pg_carried
from syncengine.codecs.arrow_bson import arrow_to_columns
from syncengine.codecs.arrow_numbers import floats_where
from syncengine.codecs.bson_arrow import arrow_to_documents, decode_documents, to_json
from syncengine.targets.base import TableSpec
from syncengine.targets.mongo import pgtext

Op = InsertOne[dict[str, Any]] | ReplaceOne[dict[str, Any]] | UpdateOne | DeleteOne


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


SNAPSHOT, CREATE, UPDATE, DELETE = "snapshot", "create", "update", "delete"
#: a keyless table's delete: one document matching the write's document (its old image)
REMOVE = "remove"


@dataclass(frozen=True)
class RowWrites:
    """A compacted batch as one write per row, with its documents already converted (the costly
    part, done once); the driver operations are made per attempt by :meth:`operation`.

    A full image (``SNAPSHOT`` from ``r``, ``CREATE`` from ``c``) is written either as a plain
    insert, much cheaper for the server than an upsert, when its ``_id`` is taken to be absent
    (see :mod:`syncengine.targets.mongo.fresh`), or as a replace-upsert.
    """

    truncate: bool
    #: per write: the batch row it came from, its kind, ``_id`` and document (the whole
    #: document with ``_id`` for full images, the fields to ``$set`` for updates)
    rows: list[int]
    kinds: list[str]
    ids: list[Any]
    docs: list[dict[str, Any] | None]

    def operation(self, i: int, insert: bool = False) -> Op:
        """Write ``i``; a full image as an insert when ``insert``, else as a replace-upsert."""
        kind, _id, doc = self.kinds[i], self.ids[i], self.docs[i]
        if kind in (SNAPSHOT, CREATE):
            assert doc is not None  # a full image always carries its document
            if insert:
                return InsertOne(doc)
            return ReplaceOne({"_id": _id}, doc, upsert=True)
        if kind == REMOVE:
            return DeleteOne(doc or {})
        if kind == UPDATE:
            update = {"$set": doc} if doc else {"$setOnInsert": {"_id": _id}}
            return UpdateOne({"_id": _id}, update, upsert=True)
        return DeleteOne({"_id": _id})

    def positions(self, kind: str) -> list[int]:
        return [i for i, k in enumerate(self.kinds) if k == kind]


def plan_writes(spec: TableSpec, data: pa.Table) -> RowWrites:
    """The writes of a compacted batch. Values are converted a column at a time and each
    document is assembled once, ``_id`` first."""
    ops_col = data.column("_op").to_pylist()
    names = [n for n in data.column_names if is_data_column(n)]
    converted = arrow_to_columns(with_spec_metadata(data.select(names), spec))
    values = dict(zip(names, converted, strict=True))
    ids = _ids(spec.key, values)
    body = [n for n in names if n != "_id"]
    nested = any("." in n for n in body)
    omit = {
        n: data.column(UNSENT_PREFIX + n).fill_null(False).to_pylist()
        for n in body
        if UNSENT_PREFIX + n in data.column_names
    }
    omit = {n: mask for n, mask in omit.items() if any(mask)}
    rows = zip(*(values[n] for n in body), strict=True) if body else [()] * data.num_rows
    plan = RowWrites(OP_TRUNCATE in ops_col, [], [], [], [])
    for i, (op, _id, row) in enumerate(zip(ops_col, ids, rows, strict=True)):
        if op == OP_TRUNCATE:
            continue
        plan.rows.append(i)
        plan.ids.append(_id)
        if op == OP_DELETE:
            plan.kinds.append(DELETE)
            plan.docs.append(None)
            continue
        fields = dict(zip(body, row, strict=True))
        for name, mask in omit.items():
            if mask[i]:
                del fields[name]
        if op in (OP_INSERT, OP_READ):
            doc = {"_id": _id}
            doc.update(nest(fields) if nested else fields)
            plan.kinds.append(SNAPSHOT if op == OP_READ else CREATE)
            plan.docs.append(doc)
        else:
            plan.kinds.append(UPDATE)
            plan.docs.append(fields)
    return plan


def _ids(key: tuple[str, ...], values: dict[str, list[Any]]) -> list[Any]:
    """Each row's ``_id`` (see :func:`doc_id`), from the converted columns."""
    if len(key) == 1:
        return values[key[0]]
    return [dict(zip(key, row, strict=True)) for row in zip(*(values[k] for k in key), strict=True)]


def build_ops(spec: TableSpec, data: pa.Table) -> tuple[bool, list[Op], list[int]]:
    """(truncate?, operations, row index of each operation) for a compacted batch."""
    plan = plan_writes(spec, data)
    return plan.truncate, [plan.operation(i) for i in range(len(plan.rows))], plan.rows


def _lookup(doc: dict[str, Any], name: str) -> Any:
    if name in doc or "." not in name:
        return doc.get(name)
    node: Any = doc
    for part in name.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def documents_to_rows(
    spec: TableSpec, docs: list[dict[str, Any]], *, as_stored: bool = False
) -> pa.Table:
    """Documents read back as a table of ``spec``'s columns (dotted names looked up nested).

    JSON columns (``pg_type`` json/jsonb, written as sub-documents, arrays or scalars) come back
    as JSON text of the stored value, whatever its shape. ``as_stored`` (conflict detection):
    an integer of ``spec`` (at any depth) that the documents hold as a double comes back as a
    double (:mod:`syncengine.codecs.arrow_numbers`), not truncated to the batch's int."""
    texts = {f.name for f in spec.schema if _is_json_text(f)}
    flat = [{f.name: _lookup(d, f.name) for f in spec.schema if f.name not in texts} for d in docs]
    decoded = decode_documents(flat).table if flat and flat[0] else None
    arrays, fields = [], []
    for field in spec.schema:
        fields.append(field)
        if field.name in texts:
            values = [_lookup(d, field.name) for d in docs]
            arrays.append(pa.array([None if v is None else to_json(v) for v in values], field.type))
            continue
        if decoded is None or field.name not in decoded.column_names:
            arrays.append(pa.nulls(len(docs), field.type))
            continue
        column = decoded.column(field.name)
        if as_stored and field.name not in spec.key:  # a key's type names its row: as sent
            field = fields[-1] = field.with_type(floats_where(field.type, column.type))
        try:
            if pg_carried.carried(field) is None:  # text: as Postgres prints it (below)
                arrays.append(column.cast(field.type))
                continue
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
            pass
        # a Postgres value stored beyond the column's Arrow type (infinity, 24:00, NaN, 2-D)
        found = pgtext.read_back(field, [_lookup(d, field.name) for d in docs])
        if found is not None:
            fields[-1], values = found
            arrays.append(values)
        else:
            arrays.append(pa.array(column.to_pylist(), field.type, from_pandas=False))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields, spec.schema.metadata))


def _is_json_text(field: pa.Field) -> bool:
    pg_type = (field.metadata or {}).get(b"pg_type")
    text = pa.types.is_string(field.type) or pa.types.is_large_string(field.type)
    return pg_type in (b"json", b"jsonb") and text
