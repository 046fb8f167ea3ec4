"""A typed Mongo field headed for a column that holds JSON, made JSON before it is resolved.

A Mongo field whose types conflicted in some batch is carried as extended JSON and its target
column holds JSON; a batch whose documents agree carries the field typed (a string, an int,
an ObjectId). Converted only when written, a typed batch's keys and values would differ from
a JSON batch's everywhere before that: its row keys (the fence and the shadow would take
``"4"`` and ``4`` for two rows, and the document's rows of the two kinds for two documents),
its reads of the target's rows (a string key sent to a ``jsonb`` column was refused: a
strategy that reads the target stopped the sync) and its hashes. So the group's parts carry
such a field as a JSON batch would (:mod:`syncengine.codecs.bson_json`), once the table is
ensured. The target says which of its columns hold JSON (``json_columns``: optional; a
target without it gets the typed values).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from syncengine.changes import BEFORE_PREFIX, ChangeBatch
from syncengine.targets.base import TableSpec


def typed_as_json(
    target: object, spec: TableSpec, parts: list[ChangeBatch]
) -> tuple[TableSpec, list[ChangeBatch]]:
    """``spec`` and ``parts`` with every typed Mongo field whose column holds JSON at the
    target carried as extended-JSON text (``bson_type=json``), and the key's JSON in the
    text the column prints (:func:`~syncengine.codecs.bson_json.canonical`)."""
    holding = json_columns(target, spec.name)
    if not holding:
        return spec, parts
    names = converted_names(spec, holding)
    if not names:
        return spec, parts
    converted = []
    for part in parts:
        data = as_json_table(part.data, names, spec.schema, spec.key)
        converted.append(part if data is part.data else part.replace(data))
    return json_fields(spec, names), converted


def converted_names(spec: TableSpec, holding: frozenset[str]) -> set[str]:
    """The fields of ``spec`` :func:`as_json_table` converts: typed Mongo fields whose
    column holds JSON, and the Mongo key fields whose column does (a document key too)."""
    from syncengine.codecs import bson_json

    return {
        f.name
        for f in spec.schema
        if f.name in holding
        and (
            bson_json.needs_json(f, key=f.name in spec.key)
            or (f.name in spec.key and bson_json.is_json(f))
        )
    }


def json_fields(spec: TableSpec, names: set[str] | frozenset[str]) -> TableSpec:
    """``spec`` with its fields among ``names`` as JSON text fields (a target reads such a
    column as the text it prints)."""
    if not any(f.name in names for f in spec.schema):
        return spec
    fields = [_as_json_field(f) if f.name in names else f for f in spec.schema]
    return TableSpec(spec.name, spec.key, pa.schema(fields, metadata=spec.schema.metadata))


async def known_json_columns(target: object, spec: TableSpec) -> frozenset[str]:
    """The columns of ``spec``'s table that hold JSON. A target that has not seen the table
    in this process (a ``verify``, a sweep after a copy of nothing) ensures it first, as its
    scan would; a daemon's target has (its stream and copies ensured it), so nothing runs
    on its connection beside the stream's groups."""
    said = getattr(target, "json_columns", None)
    if said is None:
        return frozenset()
    if said(spec.name) is None:
        await target.ensure_table(spec)  # type: ignore[attr-defined]
    return json_columns(target, spec.name)


def json_columns(target: object, table: str) -> frozenset[str]:
    """The columns of ``table`` the target says hold JSON (none when it does not say)."""
    said = getattr(target, "json_columns", None)
    holding = None if said is None else said(table)
    return frozenset() if holding is None else frozenset(holding)


def as_json_table(
    data: pa.Table,
    names: set[str] | frozenset[str],
    schema: pa.Schema,
    printed: Sequence[str] = (),
) -> pa.Table:
    """``data`` with its typed Mongo fields among ``names`` as extended-JSON text, and the
    ``printed`` fields among them (keys: compared as text) as the text their ``jsonb``
    prints; a field's BSON type is its own when it kept it (mapped columns lose Arrow
    metadata), else ``schema``'s (the group's spec: as a joined group's parts were typed)."""
    from syncengine.codecs import bson_json

    for index, field in enumerate(data.schema):
        name = field.name.removeprefix(BEFORE_PREFIX)
        if name not in names or schema.get_field_index(name) < 0:
            continue
        own = (field.metadata or {}).get(b"bson_type")
        typed = field if own else field.with_metadata(schema.field(name).metadata)
        keyed = name in printed
        if bson_json.needs_json(typed, key=keyed):
            text = bson_json.json_text(typed, data.column(index))
        elif keyed and bson_json.is_json(typed):
            text = data.column(index)
        else:
            continue  # carried as JSON already
        if keyed:
            text = bson_json.canonical(text)
        data = data.set_column(index, _as_json_field(field), text)
    return data


def _as_json_field(field: pa.Field) -> pa.Field:
    meta = {**(field.metadata or {}), b"bson_type": b"json", b"pg_type": b"jsonb"}
    return pa.field(field.name, pa.string(), nullable=field.nullable, metadata=meta)
