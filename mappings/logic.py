"""Comparison, logic, IN/BETWEEN and CASE: the predicate half of the expression compiler.

SQL's three-valued logic maps directly onto Polars (``&``/``|`` are Kleene, comparisons with
NULL give NULL), so most of this is spelling; the care goes into ``IN`` (an OR of equalities,
so a NULL in the list behaves as in SQL), string constants compared with typed columns (they
take the column's type, as Postgres does), and CASE, whose branch failures only count where
the branch is taken.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

import polars as pl
import pyarrow as pa
from polars.expr.whenthen import ChainedThen, Then
from sqlglot import exp
from syncengine.mappings.compiler import Check, Compiled, ExprCompiler, handles, merge

from syncengine.codecs import pg_temporal


def coerce_literal(c: ExprCompiler, node: exp.Expression, other: pl.DataType | None) -> Compiled:
    """A string literal compared with a typed column takes the column's type (as Postgres)."""
    compiled = c.node(node)
    if not (isinstance(node, exp.Literal) and node.is_string) or other is None:
        return compiled
    text = node.this
    try:
        if (isinstance(other, pl.Datetime) and other.time_unit == "us") or other == pl.Date:
            special = _postgres_date(text, other)
            if special is not None:
                return Compiled(special)
        if isinstance(other, pl.Datetime):
            value = dt.datetime.fromisoformat(text.replace(" ", "T", 1))
            if other.time_zone and value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            if not other.time_zone and value.tzinfo is not None:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
            return Compiled(pl.lit(value, dtype=other))
        if other == pl.Date:
            return Compiled(pl.lit(dt.date.fromisoformat(text), dtype=pl.Date))
        if other.is_integer():
            return Compiled(pl.lit(int(text), dtype=other))
        if other.is_float() or isinstance(other, pl.Decimal):
            return Compiled(pl.lit(float(Decimal(text))))
    except (ValueError, InvalidOperation):
        raise c.error(node, f"invalid input syntax for type {other}: '{text}'") from None
    return compiled


def _postgres_date(text: str, dtype: pl.DataType) -> pl.Expr | None:
    """``'infinity'``, ``'-infinity'``, ``'4713-01-01 BC'``: the values Postgres sources carry
    as their type's extremes / BC counts (:mod:`syncengine.codecs.pg_temporal`), built from
    the integer so Polars never formats them; None for other text (ISO, parsed as before)."""
    if text.strip().lower() not in ("infinity", "-infinity") and not text.rstrip().endswith("BC"):
        return None
    arrow = pl.Series([], dtype=dtype).to_arrow().type
    parsed = pg_temporal.parse(pa.array([text.strip().lower().replace(" bc", " BC")]), arrow)
    if parsed is None:
        raise ValueError(text)
    physical = parsed.cast(pa.int32() if dtype == pl.Date else pa.int64())[0].as_py()
    return pl.lit(physical, dtype=pl.Int32 if dtype == pl.Date else pl.Int64).cast(dtype)


def pair(c: ExprCompiler, node: exp.Expression) -> tuple[Compiled, Compiled]:
    """Both operands of a comparison, string literals coerced to the other side's type."""
    left_node, right_node = node.this, node.expression
    left, right = c.node(left_node), c.node(right_node)
    left = coerce_literal(c, left_node, c.dtype(right.expr))
    right = coerce_literal(c, right_node, c.dtype(left.expr))
    return left, right


_COMPARE: dict[type[exp.Expression], Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    exp.EQ: lambda a, b: a == b,
    exp.NEQ: lambda a, b: a != b,
    exp.GT: lambda a, b: a > b,
    exp.GTE: lambda a, b: a >= b,
    exp.LT: lambda a, b: a < b,
    exp.LTE: lambda a, b: a <= b,
    exp.NullSafeEQ: lambda a, b: a.eq_missing(b),
    exp.NullSafeNEQ: lambda a, b: a.ne_missing(b),
}


@handles(*_COMPARE)
def _compare(c: ExprCompiler, node: exp.Expression) -> Compiled:
    if isinstance(node.expression, exp.Any | exp.All):
        raise c.error(node, "ANY/ALL is not supported; use IN (...)")
    left, right = pair(c, node)
    return merge(_COMPARE[type(node)](left.expr, right.expr), [left, right])


@handles(exp.And, exp.Or, exp.Xor)
def _logic(c: ExprCompiler, node: exp.Expression) -> Compiled:
    left, right = c.node(node.this), c.node(node.expression)
    if isinstance(node, exp.And):
        expr = left.expr & right.expr
    elif isinstance(node, exp.Or):
        expr = left.expr | right.expr
    else:
        expr = left.expr ^ right.expr
    return merge(expr, [left, right])


@handles(exp.Not)
def _not(c: ExprCompiler, node: exp.Expression) -> Compiled:
    inner = c.node(node.this)
    return merge(~inner.expr, [inner])


@handles(exp.Is)
def _is(c: ExprCompiler, node: exp.Expression) -> Compiled:
    inner = c.node(node.this)
    what = node.expression
    if isinstance(what, exp.Null):
        expr = inner.expr.is_null()
    elif isinstance(what, exp.Boolean):
        expr = (inner.expr if what.this else ~inner.expr).fill_null(False)
    else:
        raise c.error(node, "IS supports NULL, TRUE and FALSE")
    return merge(expr, [inner])


@handles(exp.In)
def _in(c: ExprCompiler, node: exp.Expression) -> Compiled:
    if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
        raise c.error(node, "IN supports a list of values, not a subquery")
    this = c.node(node.this)
    other = c.dtype(this.expr)
    items = [coerce_literal(c, item, other) for item in node.expressions]
    if not items:
        raise c.error(node, "IN needs at least one value")
    expr = items[0].expr == this.expr
    for item in items[1:]:
        expr = expr | (item.expr == this.expr)  # Kleene OR: exactly SQL's NULL semantics
    return merge(expr, [this, *items])


@handles(exp.Between)
def _between(c: ExprCompiler, node: exp.Expression) -> Compiled:
    this = c.node(node.this)
    other = c.dtype(this.expr)
    low = coerce_literal(c, node.args["low"], other)
    high = coerce_literal(c, node.args["high"], other)
    return merge((this.expr >= low.expr) & (this.expr <= high.expr), [this, low, high])


@handles(exp.Case, exp.If)
def _case(c: ExprCompiler, node: exp.Expression) -> Compiled:
    if isinstance(node, exp.If):
        branches = [(node.this, node.args["true"])]
        default = node.args.get("false")
        operand = None
    else:
        branches = [(b.this, b.args["true"]) for b in node.args["ifs"]]
        default = node.args.get("default")
        operand = c.node(node.this) if node.this is not None else None
    parts: list[Compiled] = [operand] if operand else []
    checks: list[Check] = list(operand.checks) if operand else []
    seen = pl.lit(False)
    chain: Then | ChainedThen | None = None
    for cond_node, value_node in branches:
        cond = c.node(cond_node)
        if operand is not None:
            cond = merge(operand.expr == cond.expr, [cond])
        value = c.node(value_node)
        taken = cond.expr.fill_null(False) & ~seen
        checks += [*cond.guarded(~seen), *value.guarded(taken)]
        parts += [cond, value]
        when = pl.when(cond.expr) if chain is None else chain.when(cond.expr)
        chain = when.then(value.expr)
        seen = seen | cond.expr.fill_null(False)
    if chain is None:
        raise c.error(node, "CASE needs at least one WHEN")
    if default is not None:
        fallback = c.node(default)
        parts.append(fallback)
        checks += fallback.guarded(~seen)
        expr = chain.otherwise(fallback.expr)
    else:
        expr = chain.otherwise(pl.lit(None))
    out = merge(expr, parts)
    return Compiled(out.expr, out.deps, tuple(checks), uses_now=out.uses_now)
