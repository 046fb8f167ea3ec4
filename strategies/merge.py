"""``merge``: a field-level three-way merge against the base (the last applied source version).

Per field: changed on one side only → that side's value; changed on both sides to different
values → the ``tie`` side (``remote`` by default); unchanged → as is. Nested documents merge
field by field with the same rule: Arrow struct columns through Polars struct expressions
(vectorized), JSON columns (``json``/``jsonb``, Mongo sub-documents stored as JSON) through
:func:`merge_documents` on the rows where both sides changed the same document. Lists and scalars
are single values. When one side deleted the row and the other changed it, the ``tie`` side's
whole row wins. A key the pipeline never wrote has no base: every field both sides hold with
different values is a tie.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import polars as pl
from syncengine.strategies.base import EXISTS, Decision, StrategyContext, flags

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

_MISSING = object()


class MergeStrategy:
    name = "merge"

    def decide(
        self, base: pl.DataFrame, local: pl.DataFrame, remote: pl.DataFrame, ctx: StrategyContext
    ) -> Decision:
        tie_remote = ctx.config.tie == "remote"
        both = pl.DataFrame(
            [
                *(base[c].alias(f"b.{c}") for c in ctx.columns),
                *(local[c].alias(f"l.{c}") for c in ctx.columns),
                *(remote[c].alias(f"r.{c}") for c in ctx.columns),
            ]
        )
        merged = both.select(
            merge_expr(
                pl.col(f"b.{c}"), pl.col(f"l.{c}"), pl.col(f"r.{c}"), remote.schema[c], tie_remote
            ).alias(c)
            for c in ctx.columns
        )
        for column in ctx.json_columns & set(ctx.columns):
            merged = _merge_json_column(merged, base, local, remote, column, tie_remote)
        fields_merge = local[EXISTS] & remote[EXISTS]
        winner = remote if tie_remote else local
        rows = merged.with_columns(pl.lit(True).alias(EXISTS)).select(
            pl.when(fields_merge).then(pl.col(c)).otherwise(winner[c]).alias(c)
            for c in (*ctx.columns, EXISTS)
        )
        outcome = pl.select(
            pl.when(fields_merge).then(pl.lit("merged")).otherwise(pl.lit(ctx.config.tie))
        ).to_series()
        return Decision(rows, flags(False, rows.height), outcome.alias("outcome"))


def merge_expr(
    base: pl.Expr,
    local: pl.Expr,
    remote: pl.Expr,
    dtype: PolarsDataType,
    tie_remote: bool,
) -> pl.Expr:
    """The merged value of one column; struct columns recurse into their fields."""
    local_changed = local.ne_missing(base)
    remote_changed = remote.ne_missing(base)
    clash = local_changed & remote_changed & local.ne_missing(remote)
    atomic = (
        pl.when(clash)
        .then(remote if tie_remote else local)
        .when(local_changed)
        .then(local)
        .otherwise(remote)
    )
    if not isinstance(dtype, pl.Struct) or not dtype.fields:
        return atomic
    fields = [
        merge_expr(
            base.struct.field(f.name),
            local.struct.field(f.name),
            remote.struct.field(f.name),
            f.dtype,
            tie_remote,
        ).alias(f.name)
        for f in dtype.fields
    ]
    whole = base.is_null() | local.is_null() | remote.is_null()
    return pl.when(whole).then(atomic).otherwise(pl.struct(fields))


def _merge_json_column(
    merged: pl.DataFrame,
    base: pl.DataFrame,
    local: pl.DataFrame,
    remote: pl.DataFrame,
    column: str,
    tie_remote: bool,
) -> pl.DataFrame:
    """Re-merge, document by document, the rows where both sides changed this JSON column."""
    b, lo, r = base[column], local[column], remote[column]
    clash = (
        lo.ne_missing(b) & r.ne_missing(b) & lo.ne_missing(r) & lo.is_not_null() & r.is_not_null()
    )
    idx = clash.arg_true()
    if not idx.len():
        return merged
    values = [
        json.dumps(merge_documents(_load(bv), _load(lv), _load(rv), tie_remote), sort_keys=False)
        for bv, lv, rv in zip(b.gather(idx), lo.gather(idx), r.gather(idx), strict=True)
    ]
    column_values = merged[column].scatter(idx, pl.Series(values, dtype=pl.String))
    return merged.with_columns(column_values.alias(column))


def _load(text: str | None) -> Any:
    return _MISSING if text is None else json.loads(text)


def merge_documents(base: Any, local: Any, remote: Any, tie_remote: bool = True) -> Any:
    """Three-way merge of JSON values: dicts field by field (recursively), others as values.

    ``base`` may be :data:`_MISSING` (never written). Guarantees: ``local == base`` gives
    ``remote``; ``remote == base`` gives ``local``; equal sides give that value.
    """
    if _equal(local, base):
        return remote
    if _equal(remote, base) or _equal(local, remote):
        return local
    if not (isinstance(local, dict) and isinstance(remote, dict)):
        return remote if tie_remote else local
    base_doc = base if isinstance(base, dict) else {}
    out: dict[str, Any] = {}
    for name in [*local, *(k for k in remote if k not in local)]:
        merged = merge_documents(
            base_doc.get(name, _MISSING), local.get(name, _MISSING), remote.get(name, _MISSING),
            tie_remote,
        )  # fmt: skip
        if merged is not _MISSING:
            out[name] = merged
    return out


def _equal(a: Any, b: Any) -> bool:
    """JSON equality (``1 == 1.0`` but ``True != 1``)."""
    if a is _MISSING or b is _MISSING:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b or (_number(a) and _number(b) and a == b)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
