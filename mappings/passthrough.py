"""An identity mapping applied on the Arrow batch itself: no Polars plan, no value converted.

A mapping without ``fields``, ``exclude``, ``flatten`` or ``filter`` (the default: every
source column passes under its own name) compiles to one ``pl.col`` per column, and running
that plan still cost a Polars round trip of every value (Arrow → Polars → Arrow) plus the
plan's evaluation: about 0.2 µs a change of the CDC drain, for a batch that comes out with the
same values. What the plan does to such a batch is small and is done here with Arrow kernels
on the columns that need it, the others passed by reference:

* a non-key column is null in ``d`` and ``t`` rows (deletes carry only the key fields);
* a non-key column that a row did not send (``_unsent.<name>``) is null there, and its flag is
  kept, true only in ``c``/``u``/``r`` rows when the batch has deletes or truncates;
* the output columns come in the plan's order: the fields, the metadata columns, the
  before-images, the unsent flags; the fields carry the target schema's metadata.

:func:`passes_through` says whether a compiled mapping is such a plan (every leaf a plain
column of its own name, no checks, no filter, no ``now()``, each Arrow type what the compiled
plan would give or its 32-bit-offset form). Types are kept as the source decoded them (the
plan would give ``large_string`` for ``string``), which no stage after mapping depends on: the
target spec is the compiled one and the targets read types from ``pg_type`` metadata. The
differential test in tests/unit/mappings holds this path to the Polars plan's output.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from syncengine.changes import (
    BEFORE_PREFIX,
    LARGE_FORMS,
    META_COLUMNS,
    OP_DELETE,
    OP_TRUNCATE,
    UNSENT_PREFIX,
    ChangeBatch,
)

if TYPE_CHECKING:
    from syncengine.mappings.apply import Shape
    from syncengine.mappings.plan import CompiledMapping

#: ops whose rows carry every field (the others: the key alone)
_FULL = pa.array(["c", "u", "r"])


def passes_through(plan: CompiledMapping) -> bool:
    """Whether ``plan`` maps every source column to itself, unchanged (see module doc)."""
    if plan.filter is not None or plan.mapping.filter is not None:
        return False
    source = plan.source_schema
    target = plan.target_schema
    if len(plan.leaves) != len(source) or len(target) != len(source):
        return False
    for leaf, field in zip(plan.leaves, source, strict=True):
        compiled = plan.compiled.get(leaf.name)
        if compiled is None or compiled.checks or compiled.uses_now:
            return False
        if leaf.text is not None or leaf.source != field.name or leaf.name != field.name:
            return False
        if leaf.tail or leaf.as_json or "." in leaf.name or not compiled.expr.meta.is_column():
            return False
        index = target.get_field_index(field.name)
        if index < 0:
            return False
        want = target.field(index).type
        if want != field.type and want != LARGE_FORMS.get(field.type):
            return False
    return True


def apply_identity(plan: CompiledMapping, batch: ChangeBatch, shape: Shape) -> ChangeBatch:
    """``batch`` as the compiled identity ``plan`` maps it (see the module docstring)."""
    data = batch.data
    partial = bool(shape.ops & {OP_DELETE, OP_TRUNCATE})
    full = pc.is_in(data.column("_op"), value_set=_FULL) if partial else None
    key = set(plan.key)
    fields: list[pa.Field] = []
    columns: list[pa.ChunkedArray] = []
    flags: list[tuple[str, pa.ChunkedArray]] = []
    before: list[str] = []
    for leaf in plan.leaves:
        name = leaf.name
        column = data.column(name)
        if name not in key:
            if name in shape.unsent:
                unsent = pc.fill_null(data.column(UNSENT_PREFIX + name), False)
                column = pc.if_else(unsent, pa.scalar(None, column.type), column)
                flags.append((name, pc.and_(unsent, full) if full is not None else unsent))
            if full is not None:
                column = pc.if_else(full, column, pa.scalar(None, column.type))
        meta = plan.target_schema.field(plan.target_schema.get_field_index(name)).metadata
        fields.append(pa.field(name, column.type, metadata=meta))
        columns.append(column)
        if name in shape.before:
            before.append(name)
    for name in [*META_COLUMNS, *(BEFORE_PREFIX + b for b in before)]:
        columns.append(data.column(name))
        fields.append(pa.field(name, data.schema.field(name).type))
    for name, flag in flags:
        columns.append(flag)
        fields.append(pa.field(UNSENT_PREFIX + name, pa.bool_()))
    table = pa.Table.from_arrays(columns, schema=pa.schema(fields))
    return ChangeBatch(plan.mapping.target_name, table, plan.key, batch.meta)
