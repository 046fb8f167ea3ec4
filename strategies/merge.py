"""``merge``: a field-level three-way merge against the base (the last applied source version).

Per field: changed on one side only → that side's value; changed on both sides to different
values → the ``tie`` side (``remote`` by default); unchanged → as is. Nested documents merge
field by field with the same rule: Arrow struct columns through Polars struct expressions
(vectorized), JSON columns (``json``/``jsonb``, Mongo sub-documents stored as JSON) through
:func:`merge_documents` on the rows where both sides changed the same document. Lists and scalars
are single values. When one side deleted the row and the other changed it, the ``tie`` side's
whole row wins. A key the pipeline never wrote has no base: every field both sides hold with
different values is a tie.

Two-way (both frames carry versions): see :func:`_two_way`; a clash goes to the newer write.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import polars as pl
from syncengine.strategies.base import (
    EXISTS,
    LOCAL,
    MERGED,
    REMOTE,
    SIDE,
    Decision,
    StrategyContext,
    flags,
)
from syncengine.strategies.builtin import newer_version

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

_MISSING = object()


class MergeStrategy:
    name = "merge"

    def decide(
        self, base: pl.DataFrame, local: pl.DataFrame, remote: pl.DataFrame, ctx: StrategyContext
    ) -> Decision:
        if SIDE in local.columns and SIDE in remote.columns and ctx.config.timestamp is None:
            return _two_way(base, local, remote, ctx)
        tie_remote = ctx.config.tie == "remote"
        merged = merged_fields(base, local, remote, ctx, tie_remote)
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


def merged_fields(
    base: pl.DataFrame,
    local: pl.DataFrame,
    remote: pl.DataFrame,
    ctx: StrategyContext,
    tie_remote: bool,
) -> pl.DataFrame:
    """The field-level merge of every row (data columns only), clashes to one side."""
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
    return merged


def _two_way(
    base: pl.DataFrame, local: pl.DataFrame, remote: pl.DataFrame, ctx: StrategyContext
) -> Decision:
    """Two-way ``merge`` (both frames carry versions, syncengine.conflicts.versions).

    Which side is newer is decided as ``timestamp`` decides it (:func:`newer_version`: the
    later commit, equal times to the ``tie`` side). Where both sides hold the row and the
    target changed since the base (a real concurrent edit), the row is the field-level merge,
    a field both sides changed taking the newer side's value; anywhere else (a delete on
    either side, a target that did not change since the base, an echo judged by its version)
    the newer side's whole row, exactly as ``timestamp``. So a delete against a concurrent
    update is settled by commit time, never merged into a half row, and the rows nothing
    merged are decided by the versions that make both directions agree."""
    remote_wins = newer_version(
        local[ctx.commit_time], local[SIDE], remote[ctx.commit_time], remote[SIDE],
        ctx.config.tie,
    )  # fmt: skip
    target_edited = _differs(local, base, ctx.columns)
    fields_merge = local[EXISTS] & remote[EXISTS] & (~base[EXISTS] | target_edited)
    to_remote = merged_fields(base, local, remote, ctx, tie_remote=True)
    to_local = merged_fields(base, local, remote, ctx, tie_remote=False)
    # a newer change that differs from the target row but merges into exactly that row (its
    # base lagged): whole-row, as timestamp, so this side writes and the echo settles the key
    # (with the other direction doing the same from its own base, neither wrote: they stayed
    # a row apart; docs/benchmarks-findings.md, the two-way merge section)
    kept = ~_differs(to_remote, local, ctx.columns)
    fields_merge = fields_merge & ~(remote_wins & kept & _differs(remote, local, ctx.columns))
    to_newer_remote, to_newer_local = fields_merge & remote_wins, fields_merge & ~remote_wins
    rows = pl.select(
        *(
            pl.when(to_newer_remote).then(to_remote[c]).when(to_newer_local).then(to_local[c])
            .when(remote_wins).then(remote[c]).otherwise(local[c]).alias(c)
            for c in ctx.columns
        ),
        pl.when(fields_merge).then(True).when(remote_wins).then(remote[EXISTS])
        .otherwise(local[EXISTS]).alias(EXISTS),
    )  # fmt: skip
    outcome = pl.select(
        pl.when(fields_merge)
        .then(pl.lit(MERGED))
        .when(remote_wins)
        .then(pl.lit(REMOTE))
        .otherwise(pl.lit(LOCAL))
    ).to_series()
    return Decision(rows, flags(False, rows.height), outcome.alias("outcome"))


def _differs(a: pl.DataFrame, b: pl.DataFrame, columns: tuple[str, ...]) -> pl.Series:
    """Per row: some column differs (nulls compared as values)."""
    return pl.select(pl.any_horizontal(a[c].ne_missing(b[c]) for c in columns)).to_series()


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
