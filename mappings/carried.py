"""Mapping expressions over a column that a batch carries as Postgres text.

A Postgres source carries a column as text for a batch holding a value the column's Arrow
type cannot hold (:mod:`syncengine.codecs.pg_carried`). An expression compiled over that text
would compare strings or fail to type-check, silently computing something Postgres would not.
So, before a batch is mapped, every such column an expression reads (computed ``fields`` and
the ``filter``; a plain rename or pass-through reads nothing) is turned back into its native
type with the source's converters: the values that have one read exactly as in a native batch,
and the rows holding a value that has none (``24:00:00``, ``{{1,2},{3,4}}``, ``NaN``) become
dead letters naming the column, the value and what to do. Columns no expression reads keep
their text, which targets write back as the Postgres type.
"""

from __future__ import annotations

import json
from functools import lru_cache

import pyarrow as pa
import pyarrow.compute as pc
from syncengine.mappings.parse import parse_expression

from syncengine.changes import (
    BEFORE_PREFIX,
    OP_INSERT,
    OP_READ,
    OP_UPDATE,
    UNSENT_PREFIX,
    ChangeBatch,
)
from syncengine.codecs import pg_carried
from syncengine.config.models import MappingConfig
from syncengine.state import DeadLetter

WHAT_TO_DO = (
    "map the column as a plain field (no expression) to copy it unchanged, keep the expression "
    "off such values (snapshot `where`), or change the value in the source"
)


@lru_cache(maxsize=256)
def _columns(text: str, dialect: str, rename_free: bool) -> frozenset[str]:
    from sqlglot import exp

    tree = parse_expression(text, dialect)
    if rename_free and isinstance(tree, exp.Column):
        return frozenset()  # a rename passes the value unchanged
    return frozenset(c.parts[0].name for c in tree.find_all(exp.Column))


def expression_columns(mapping: MappingConfig) -> dict[str, list[str]]:
    """Source column → where an expression reads it (``fields.<name>``, ``filter``)."""
    where: dict[str, list[str]] = {}
    for name, text in (mapping.fields or {}).items():
        if name in mapping.exclude:
            continue
        for column in _columns(text, mapping.dialect, True):
            where.setdefault(column, []).append(f"fields.{name}")
    if mapping.filter:
        for column in _columns(mapping.filter, mapping.dialect, False):
            where.setdefault(column, []).append("filter")
    return where


def native_schema(mapping: MappingConfig, schema: pa.Schema) -> pa.Schema:
    """``schema`` as :func:`restore` leaves a batch of it: what the mapping compiles for."""
    read = expression_columns(mapping)
    if not read:
        return schema
    fields = []
    for f in schema:
        type_ = pg_carried.carried(f) if f.name in read else None
        fields.append(f if type_ is None else f.with_type(type_.arrow))
    return pa.schema(fields, metadata=schema.metadata)


def restore(
    pipeline: str, mapping: MappingConfig, batch: ChangeBatch
) -> tuple[ChangeBatch, list[DeadLetter]]:
    """``batch`` with the text-carried columns an expression reads in their native type, and
    the dead letters of the rows holding a value that has no native form."""
    read = expression_columns(mapping)
    if not read:
        return batch, []
    data = batch.data
    found = []
    for i, f in enumerate(data.schema):
        column = f.name[len(BEFORE_PREFIX) :] if f.name.startswith(BEFORE_PREFIX) else f.name
        type_ = pg_carried.carried(f) if column in read else None
        if type_ is not None:
            found.append((i, f, column, type_))
    if not found:
        return batch, []
    full = pc.fill_null(pc.is_in(batch.ops, pa.array([OP_INSERT, OP_UPDATE, OP_READ])), False)
    bad = pa.array([False] * data.num_rows, pa.bool_())
    reasons: list[str | None] = [None] * data.num_rows
    original = data
    for i, f, column, type_ in found:
        native, beyond = pg_carried.to_native(data.column(i), type_)
        data = data.set_column(i, f.with_type(type_.arrow), native)
        beyond = pc.and_(beyond, full)  # a delete carries only its key
        if not pc.any(beyond).as_py():
            continue
        rows = pc.indices_nonzero(beyond)
        values = original.column(i).take(rows).to_pylist()  # only the rows set aside
        for row, value in zip(rows.to_pylist(), values, strict=True):
            if reasons[row] is None:
                reasons[row] = (
                    f"column {f.name} holds {value!r}, a {type_.name} value with no "
                    f"{type_.arrow} form, and {', '.join(read[column])} compute(s) over it; "
                    + WHAT_TO_DO
                )
        bad = pc.or_(bad, beyond)
    letters = _letters(pipeline, mapping, original, bad, reasons)
    if letters:
        data = data.filter(pc.invert(bad))
    return batch.replace(data), letters


def _letters(
    pipeline: str,
    mapping: MappingConfig,
    data: pa.Table,
    bad: pa.Array,
    reasons: list[str | None],
) -> list[DeadLetter]:
    """The set-aside rows (rare: per-row Python is fine here), payload as in apply.py."""
    if not pc.any(bad).as_py():
        return []
    keep = [n for n in data.column_names if not n.startswith((BEFORE_PREFIX, UNSENT_PREFIX))]
    rows = data.select(keep).filter(bad).to_pylist()
    picked = [r for r in reasons if r is not None]
    return [
        DeadLetter(
            pipeline=pipeline,
            table=mapping.source,
            stage="mapping",
            reason=f"mapping {mapping.source} -> {mapping.target_name}, {reason}",
            payload=json.dumps(row, default=str, sort_keys=True),
            position=row.get("_pos"),
        )
        for row, reason in zip(rows, picked, strict=True)
    ]
