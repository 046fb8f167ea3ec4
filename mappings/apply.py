"""Running a compiled mapping over a ChangeBatch: one lazy Polars plan per batch shape.

Row semantics (docs/mappings.md has the long form):

* **filter** — the target mirrors the source rows that match. ``u`` rows that do not match
  become deletes (the row may have matched before); ``c`` rows that do not match become deletes
  too (a compacted delete+insert of the key may hide a row the target still holds; deleting an
  absent row is harmless); ``r`` (snapshot) rows that do not match are dropped. ``d`` and ``t``
  pass. A filter that reads a column the row did not send uses the before-image value when the
  batch has one (unsent means unchanged); otherwise the row is kept as an update, unchanged.
* **deletes** carry only the key fields; every other field is null.
* **unsent** — a field computed from a column the row did not send is null and flagged
  ``_unsent.<field>``; it is never computed from a null.
* **bad values** — checks (failed cast, division by zero) mark rows; those rows become dead
  letters and leave the batch, the rest continues.

Everything is one ``select`` over the batch; the expressions depend only on the batch's *shape*
(which ops, unsent and before-image columns occur), so they are built once per shape.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from polars.expr.whenthen import ChainedThen, Then
from syncengine.mappings.compiler import NOW_COLUMN, Compiled
from syncengine.mappings.errors import ExpressionError
from syncengine.mappings.passthrough import apply_identity
from syncengine.mappings.plan import CompiledMapping, new_compiler
from syncengine.mappings.shape import ColumnRef, nest

from syncengine.changes import (
    BEFORE_PREFIX,
    META_COLUMNS,
    OP_DELETE,
    OP_INSERT,
    OP_READ,
    OP_TRUNCATE,
    OP_UPDATE,
    UNSENT_PREFIX,
    ChangeBatch,
)
from syncengine.state import DeadLetter

ROW = "__row"
FAIL = "__fail"
FULL_OPS = [OP_INSERT, OP_UPDATE, OP_READ]


@dataclass(frozen=True)
class MappingResult:
    batch: ChangeBatch
    dead_letters: list[DeadLetter]


@dataclass(frozen=True)
class Shape:
    """What about a batch changes the plan (not its values)."""

    ops: frozenset[str]
    unsent: frozenset[str]
    before: frozenset[str]


@dataclass(frozen=True)
class Plan:
    action: list[pl.Expr]  # new _op (null: drop the row) and filter failures; [] = none
    keep: pl.Expr | None  # or simply the rows to keep
    columns: list[pl.Expr]  # the output select
    blame: list[str]  # FAIL index -> field name / reason
    checked: bool


def _unsent_of(compiled: Compiled, unsent: frozenset[str]) -> pl.Expr | None:
    """True where some column the expression reads was not sent (None: always sent)."""
    masks = []
    for dep in sorted(compiled.deps):
        parts = dep.split(".")
        for depth in range(1, len(parts) + 1):
            name = ".".join(parts[:depth])
            if name in unsent:
                masks.append(pl.col(UNSENT_PREFIX + name).fill_null(False))
    if not masks:
        return None
    return pl.any_horizontal(masks) if len(masks) > 1 else masks[0]


def _filter_action(
    plan: CompiledMapping, shape: Shape
) -> tuple[list[pl.Expr], list[tuple[pl.Expr, str, str]], pl.Expr | None]:
    assert plan.filter is not None
    compiled = plan.filter
    fillable = shape.unsent & shape.before

    def ref(name: str) -> pl.Expr:  # unsent means unchanged: the before-image value
        if name not in fillable:
            return pl.col(name)
        mask = pl.col(UNSENT_PREFIX + name).fill_null(False)
        return pl.when(mask).then(pl.col(BEFORE_PREFIX + name)).otherwise(pl.col(name))

    if {d.split(".")[0] for d in compiled.deps} & fillable:
        compiled = plan.compiler(ref).compile(plan.mapping.filter or "")
    match = _matches(compiled, shape)
    op = pl.col("_op")
    if shape.ops <= {OP_READ} and not compiled.checks:
        return [], [], match  # a snapshot batch: rows that do not match are simply dropped
    action: pl.Expr
    if shape.ops <= {OP_READ}:
        action = pl.when(match).then(op)
    else:
        dropped = op == OP_READ
        if plan.kept_elsewhere:  # a row a sibling mapping writes into the table stays there
            dropped = dropped | _kept_elsewhere(plan, shape, ref)
        action = (
            pl.when(op.is_in([OP_DELETE, OP_TRUNCATE]) | match)
            .then(op)
            .when(dropped)
            .then(pl.lit(None, dtype=pl.String))
            .otherwise(pl.lit(OP_DELETE))
        )
    # The filter's own failures are judged on the original op, before the action rewrites it.
    failures = [
        (c.failed & op.is_in(FULL_OPS)).alias(f"__filter_fail{i}")
        for i, c in enumerate(compiled.checks)
    ]
    checks = [
        (pl.col(f.meta.output_name()), c.reason, "filter")
        for f, c in zip(failures, compiled.checks, strict=True)
    ]
    return [action.alias("_op"), *failures], checks, None


def _matches(compiled: Compiled, shape: Shape) -> pl.Expr:
    """Rows the filter keeps; a row whose filter reads a column it did not send (and has no
    before-image of) counts as kept: it stays an update, unchanged there."""
    match = compiled.expr.fill_null(False)
    unknown = _unsent_of(compiled, shape.unsent - shape.before)
    return match if unknown is None else match | unknown


def _kept_elsewhere(plan: CompiledMapping, shape: Shape, ref: ColumnRef) -> pl.Expr:
    """Rows one of :attr:`~CompiledMapping.kept_elsewhere`'s filters keeps (the other
    mappings of this source table into this target table): a row leaving this mapping's
    filter for a sibling's is the sibling's row now, so deleting it would drop what the
    sibling writes in the same group."""
    kept = pl.lit(False)
    for text, dialect in plan.kept_elsewhere:
        if text is None:
            return pl.lit(True)  # a sibling without a filter keeps every row
        try:
            compiled = new_compiler(plan.source_schema, dialect, plan.missing, ref).compile(text)
        except ExpressionError:
            return pl.lit(True)  # (the sibling reports its own error; here: never delete)
        kept = kept | _matches(compiled, shape)
    return kept


def build_plan(plan: CompiledMapping, shape: Shape) -> Plan:
    checks: list[tuple[pl.Expr, str, str]] = []
    action: list[pl.Expr] = []
    keep = None
    if plan.filter is not None:
        action, checks, keep = _filter_action(plan, shape)
    partial = plan.filter is not None or bool(shape.ops & {OP_DELETE, OP_TRUNCATE})
    full = pl.col("_op").is_in(FULL_OPS)
    leaves: list[tuple[tuple[str, ...], pl.Expr]] = []
    unsent_cols: list[pl.Expr] = []
    key = set(plan.key)
    for leaf in plan.leaves:
        compiled = plan.compiled[leaf.name]
        expr = compiled.expr
        unsent = None if leaf.name in key else _unsent_of(compiled, shape.unsent)
        guard: pl.Expr | None = None
        if unsent is not None:
            expr = pl.when(unsent).then(None).otherwise(expr)
            flag = (unsent & full) if partial else unsent
            unsent_cols.append(flag.alias(UNSENT_PREFIX + leaf.name))
            guard = ~unsent
        if partial and leaf.name not in key:
            expr = pl.when(full).then(expr)
            guard = full if guard is None else guard & full
        for check in compiled.checks:
            failed = check.failed if guard is None else check.failed & guard
            checks.append((failed, check.reason, leaf.name))
        leaves.append((leaf.path, expr))
    columns = nest(leaves)
    columns += [pl.col(name) for name in META_COLUMNS]
    columns += _before_columns(plan, shape)
    columns += unsent_cols
    blame = [f"field {name}: {reason}" for _, reason, name in checks]
    if checks:
        fail: Then | ChainedThen = pl.when(checks[0][0]).then(pl.lit(0, dtype=pl.Int32))
        for i, (failed, _, _) in enumerate(checks[1:], start=1):
            fail = fail.when(failed).then(pl.lit(i, dtype=pl.Int32))
        columns.append(fail.alias(FAIL))
    return Plan(action, keep, columns, blame, bool(checks))


def _before_columns(plan: CompiledMapping, shape: Shape) -> list[pl.Expr]:
    """Before-image of each target field whose source columns all have one."""
    if not shape.before:
        return []
    compiler = plan.compiler(lambda name: pl.col(BEFORE_PREFIX + name))
    out = []
    for leaf in plan.leaves:
        tops = {d.split(".")[0] for d in plan.compiled[leaf.name].deps}
        if tops and tops <= shape.before:
            expr = plan.leaf_expr(leaf, compiler).expr
            out.append(expr.alias(BEFORE_PREFIX + leaf.name))
    return out


def _shape(batch: ChangeBatch) -> Shape:
    ops_column = batch.ops
    if ops_column.null_count == 0 and pc.all(pc.equal(ops_column, OP_READ)).as_py():
        ops = [OP_READ]  # snapshots: one cheap comparison instead of hashing every op
    else:
        ops = pc.unique(ops_column).to_pylist()
    names = batch.data.column_names
    return Shape(
        frozenset(ops),
        frozenset(batch.unsent_columns),
        frozenset(n[len(BEFORE_PREFIX) :] for n in names if n.startswith(BEFORE_PREFIX)),
    )


def apply_mapping(plan: CompiledMapping, batch: ChangeBatch) -> MappingResult:
    shape = _shape(batch)
    if plan.passes_through():  # an identity mapping: the Arrow batch, nulled where it must be
        return MappingResult(apply_identity(plan, batch, shape), [])
    built = plan.variant(shape, build_plan)
    frame = batch.to_polars()
    lazy = frame.lazy()
    if any(c.uses_now for c in plan.compiled.values()) or (plan.filter and plan.filter.uses_now):
        lazy = lazy.with_columns(pl.lit(dt.datetime.now(dt.UTC)).alias(NOW_COLUMN))
    out = _run(built, lazy)
    letters: list[DeadLetter] = []
    if built.checked:
        if out.get_column(FAIL).is_not_null().any():
            # Rare path: run again with row numbers to find the original rows.
            out = _run(built, lazy.with_row_index(ROW), pl.col(ROW))
            failed = out.get_column(FAIL).is_not_null()
            letters = _dead_letters(plan, frame, out.filter(failed), built.blame)
            out = out.filter(~failed).drop(ROW)
        out = out.drop(FAIL)
    table = _with_metadata(out.to_arrow(), plan.target_schema)
    mapped = ChangeBatch(plan.mapping.target_name, table, plan.key, batch.meta)
    return MappingResult(mapped, letters)


def _run(built: Plan, lazy: pl.LazyFrame, *extra: pl.Expr) -> pl.DataFrame:
    if built.action:
        lazy = lazy.with_columns(built.action).filter(pl.col("_op").is_not_null())
    elif built.keep is not None:
        lazy = lazy.filter(built.keep)
    return lazy.select(*built.columns, *extra).collect()


def _dead_letters(
    plan: CompiledMapping, frame: pl.DataFrame, failed: pl.DataFrame, blame: list[str]
) -> list[DeadLetter]:
    """Rows set aside: per-row Python is fine here (they left the hot path)."""
    columns = [c for c in frame.columns if not c.startswith((BEFORE_PREFIX, UNSENT_PREFIX))]
    rows = frame.select(columns).with_row_index(ROW)
    picked = failed.select(ROW, FAIL).join(rows, on=ROW, how="left")
    letters = []
    for row in picked.iter_rows(named=True):
        reason = blame[row.pop(FAIL)]
        row.pop(ROW)
        letters.append(
            DeadLetter(
                pipeline=plan.pipeline,
                table=plan.mapping.source,
                stage="mapping",
                reason=f"mapping {plan.name}, {reason}",
                payload=json.dumps(row, default=str, sort_keys=True),
                position=row.get("_pos"),
            )
        )
    return letters


def _with_metadata(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Put the target schema's field metadata (pg_type, bson_type) on the output columns."""
    fields = []
    changed = False
    for f in table.schema:
        index = schema.get_field_index(f.name)
        meta = schema.field(index).metadata if index >= 0 else None
        if meta:
            f = f.with_metadata(meta)
            changed = True
        fields.append(f)
    if not changed:
        return table
    return pa.Table.from_arrays(table.columns, schema=pa.schema(fields))


def target_schema_of(plan: CompiledMapping) -> pa.Schema:
    """The data columns a mapped batch has, with metadata (from an empty run of the plan)."""
    columns = {f.name: pa.array([], f.type) for f in plan.source_schema}
    columns["_op"] = pa.array([], pa.string())
    columns["_pos"] = pa.array([], pa.string())
    empty = ChangeBatch(plan.mapping.source, pa.table(columns) if columns else pa.table({}))
    frame = empty.to_polars()
    frame = frame.with_columns(
        pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("_ts"),
        pl.lit(None, dtype=pl.Int64).alias("_txid"),
        pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias(NOW_COLUMN),
    )
    built = build_plan(plan, Shape(frozenset(), frozenset(), frozenset()))
    out = _run(built, frame.lazy()).to_arrow()
    fields = []
    by_name = {leaf.name: leaf.metadata for leaf in plan.leaves}
    for f in out.schema:
        if f.name in META_COLUMNS or f.name in (FAIL, ROW):
            continue
        meta = by_name.get(f.name)
        fields.append(f.with_metadata(meta) if meta else f)
    return pa.schema(fields)
