"""Arithmetic, string and conditional functions of mapping expressions, as Polars expressions.

Each handler follows Postgres semantics where results could otherwise differ between the
snapshot push-down (run by Postgres) and the stream (run by Polars): integer division and ``%``
truncate toward zero, ``||`` is NULL when an operand is, ``concat()`` skips NULLs, ``trim``
removes spaces only, ``substring`` positions are 1-based and may start before the string.
Division by zero is a per-row failure (dead letter), as it is an error in Postgres.
"""

from __future__ import annotations

import polars as pl
from sqlglot import exp
from syncengine.mappings.casts import to_text
from syncengine.mappings.compiler import Check, Compiled, ExprCompiler, handles, merge
from syncengine.mappings.logic import pair

_REGEX_META = set("\\.+*?()|[]{}^$#&-~")


def text(c: ExprCompiler, compiled: Compiled) -> pl.Expr:
    """An operand as text (Postgres would apply the type's output function)."""
    dtype = c.dtype(compiled.expr)
    return compiled.expr if dtype in (None, pl.String) else to_text(compiled.expr, dtype)


# -- arithmetic -----------------------------------------------------------------------------


@handles(exp.Add, exp.Sub, exp.Mul)
def _arith(c: ExprCompiler, node: exp.Expression) -> Compiled:
    left, right = pair(c, node)
    if isinstance(node, exp.Add):
        expr = left.expr + right.expr
    elif isinstance(node, exp.Sub):
        expr = left.expr - right.expr
    else:
        expr = left.expr * right.expr
    return merge(expr, [left, right])


def _both_integer(c: ExprCompiler, a: Compiled, b: Compiled) -> bool:
    types = [c.dtype(a.expr), c.dtype(b.expr)]
    return all(t is not None and t.is_integer() for t in types)


@handles(exp.Div, exp.Mod, exp.IntDiv)
def _divide(c: ExprCompiler, node: exp.Expression) -> Compiled:
    left, right = pair(c, node)
    a, b = left.expr, right.expr
    opposite = (a < 0) != (b < 0)
    if isinstance(node, exp.Mod):
        floor_mod = a % b
        expr = pl.when((floor_mod != 0) & opposite).then(floor_mod - b).otherwise(floor_mod)
    elif isinstance(node, exp.IntDiv) or _both_integer(c, left, right):
        floor_div = a // b
        expr = pl.when((a % b != 0) & opposite).then(floor_div + 1).otherwise(floor_div)
    else:
        expr = a / b
    divisor = c.literal_value(node.expression) if _is_constant(node.expression) else None
    if isinstance(divisor, int | float) and divisor != 0:
        return merge(expr, [left, right])  # a constant divisor cannot be zero: no check
    zero = (b == 0).fill_null(False) & a.is_not_null()
    out = merge(pl.when(~zero).then(expr), [left, right])
    return Compiled(out.expr, out.deps, (*out.checks, Check(zero, "division by zero")))


def _is_constant(node: exp.Expression) -> bool:
    while isinstance(node, exp.Paren):
        node = node.this
    return (
        isinstance(node, exp.Literal)
        and not node.is_string
        or (isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal))
    )


@handles(exp.Neg)
def _neg(c: ExprCompiler, node: exp.Expression) -> Compiled:
    inner = c.node(node.this)
    return merge(-inner.expr, [inner])


@handles(exp.Abs)
def _abs(c: ExprCompiler, node: exp.Expression) -> Compiled:
    inner = c.node(node.this)
    return merge(inner.expr.abs(), [inner])


@handles(exp.Round)
def _round(c: ExprCompiler, node: exp.Expression) -> Compiled:
    inner = c.node(node.this)
    places = node.args.get("decimals")
    digits = int(c.literal_value(places)) if places is not None else 0
    dtype = c.dtype(inner.expr)
    if dtype is not None and dtype.is_integer():
        return inner
    return merge(inner.expr.round(digits, mode="half_away_from_zero"), [inner])


@handles(exp.Floor, exp.Ceil)
def _floor_ceil(c: ExprCompiler, node: exp.Expression) -> Compiled:
    inner = c.node(node.this)
    dtype = c.dtype(inner.expr)
    if dtype is not None and dtype.is_integer():
        return inner
    expr = inner.expr.floor() if isinstance(node, exp.Floor) else inner.expr.ceil()
    return merge(expr, [inner])


# -- conditional ----------------------------------------------------------------------------


@handles(exp.Coalesce)
def _coalesce(c: ExprCompiler, node: exp.Expression) -> Compiled:
    parts = [c.node(node.this), *(c.node(e) for e in node.expressions)]
    checks: list[Check] = []
    all_null = pl.lit(True)
    for part in parts:
        checks += part.guarded(all_null)  # an argument is evaluated only if all before are null
        all_null = all_null & part.expr.is_null()
    out = merge(pl.coalesce([p.expr for p in parts]), parts)
    return Compiled(out.expr, out.deps, tuple(checks), uses_now=out.uses_now)


@handles(exp.Nullif)
def _nullif(c: ExprCompiler, node: exp.Expression) -> Compiled:
    left, right = pair(c, node)
    expr = pl.when((left.expr == right.expr).fill_null(False)).then(None).otherwise(left.expr)
    return merge(expr, [left, right])


@handles(exp.Greatest, exp.Least)
def _greatest(c: ExprCompiler, node: exp.Expression) -> Compiled:
    parts = [c.node(node.this), *(c.node(e) for e in node.expressions)]
    exprs = [p.expr for p in parts]
    expr = pl.max_horizontal(exprs) if isinstance(node, exp.Greatest) else pl.min_horizontal(exprs)
    return merge(expr, parts)


# -- strings --------------------------------------------------------------------------------


@handles(exp.Lower, exp.Upper)
def _case_fold(c: ExprCompiler, node: exp.Expression) -> Compiled:
    inner = c.node(node.this)
    value = text(c, inner)
    expr = value.str.to_lowercase() if isinstance(node, exp.Lower) else value.str.to_uppercase()
    return merge(expr, [inner])


@handles(exp.Length)
def _length(c: ExprCompiler, node: exp.Expression) -> Compiled:
    inner = c.node(node.this)
    return merge(text(c, inner).str.len_chars().cast(pl.Int32), [inner])


@handles(exp.Trim)
def _trim(c: ExprCompiler, node: exp.Expression) -> Compiled:
    inner = c.node(node.this)
    chars_node = node.args.get("expression")
    chars = str(c.literal_value(chars_node)) if chars_node is not None else " "
    value = text(c, inner)
    position = str(node.args.get("position") or "BOTH").upper()
    if position == "LEADING":
        expr = value.str.strip_chars_start(chars)
    elif position == "TRAILING":
        expr = value.str.strip_chars_end(chars)
    else:
        expr = value.str.strip_chars(chars)
    return merge(expr, [inner])


@handles(exp.DPipe)
def _pipe(c: ExprCompiler, node: exp.Expression) -> Compiled:
    left, right = c.node(node.this), c.node(node.expression)
    return merge(pl.concat_str([text(c, left), text(c, right)]), [left, right])


@handles(exp.Concat, exp.ConcatWs)
def _concat(c: ExprCompiler, node: exp.Expression) -> Compiled:
    nodes = list(node.expressions)
    separator = ""
    if isinstance(node, exp.ConcatWs):
        separator = str(c.literal_value(nodes.pop(0)))
    parts = [c.node(n) for n in nodes]
    texts = [text(c, p) for p in parts]
    if separator:
        expr = pl.concat_str(texts, separator=separator, ignore_nulls=True)
    else:
        expr = pl.concat_str(texts, ignore_nulls=True)  # concat() skips NULLs
    return merge(expr, parts)


@handles(exp.Substring)
def _substring(c: ExprCompiler, node: exp.Expression) -> Compiled:
    inner = c.node(node.this)
    parts = [inner]
    start: pl.Expr = pl.lit(1, dtype=pl.Int64)
    if node.args.get("start") is not None:
        begin = c.node(node.args["start"])
        parts.append(begin)
        start = begin.expr.cast(pl.Int64)
    first = pl.max_horizontal(start, pl.lit(1, dtype=pl.Int64))
    length: pl.Expr | None = None
    if node.args.get("length") is not None:
        size = c.node(node.args["length"])
        parts.append(size)
        end = start + size.expr.cast(pl.Int64)
        length = pl.max_horizontal(end - first, pl.lit(0, dtype=pl.Int64))
    return merge(text(c, inner).str.slice(first - 1, length), parts)


@handles(exp.Replace)
def _replace(c: ExprCompiler, node: exp.Expression) -> Compiled:
    inner = c.node(node.this)
    old = str(c.literal_value(node.expression))
    new = str(c.literal_value(node.args.get("replacement")))
    if not old:
        return inner
    return merge(text(c, inner).str.replace_all(old, new, literal=True), [inner])


@handles(exp.Left, exp.Right)
def _left_right(c: ExprCompiler, node: exp.Expression) -> Compiled:
    inner, count = c.node(node.this), c.node(node.expression)
    value = text(c, inner)
    expr = value.str.head(count.expr) if isinstance(node, exp.Left) else value.str.tail(count.expr)
    return merge(expr, [inner, count])


# -- pattern matching -----------------------------------------------------------------------


def escape_regex(literal: str) -> str:
    """Escape regex metacharacters (valid for Rust's regex, PCRE and Python alike)."""
    return "".join("\\" + ch if ch in _REGEX_META else ch for ch in literal)


def like_regex(pattern: str, escape: str = "\\") -> str:
    """A SQL LIKE pattern as an anchored regex (``%`` any run, ``_`` one character)."""
    out: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if ch == escape:
            out.append(escape_regex(next(chars, escape)))
        elif ch == "%":
            out.append(".*")
        elif ch == "_":
            out.append(".")
        else:
            out.append(escape_regex(ch))
    return "(?s)^" + "".join(out) + "$"


def _like_fast(value: pl.Expr, pattern: str) -> pl.Expr | None:
    """Plain prefix/suffix/substring/equality patterns without a regex."""
    if "_" in pattern or "\\" in pattern:
        return None
    core = pattern.strip("%")
    if "%" in core:
        return None
    starts, ends = pattern.startswith("%"), pattern.endswith("%")
    if starts and ends:
        return value.str.contains(core, literal=True)
    if ends:
        return value.str.starts_with(core)
    if starts:
        return value.str.ends_with(core)
    return value == core


@handles(exp.Like, exp.ILike, exp.RegexpLike, exp.RegexpILike)
def _like(c: ExprCompiler, node: exp.Expression) -> Compiled:
    inner = c.node(node.this)
    pattern_node = node.expression
    if not (isinstance(pattern_node, exp.Literal) and pattern_node.is_string):
        raise c.error(pattern_node, "the pattern must be a string constant")
    pattern = pattern_node.this
    value = text(c, inner)
    if isinstance(node, exp.Like):
        expr = _like_fast(value, pattern)
        if expr is None:
            expr = value.str.contains(like_regex(pattern))
    elif isinstance(node, exp.ILike):
        expr = value.str.contains("(?i)" + like_regex(pattern))
    else:
        regex = ("(?i)" if isinstance(node, exp.RegexpILike) else "") + pattern
        try:  # fail at validation, not in the middle of a batch
            pl.select(pl.lit("").str.contains(regex))
        except pl.exceptions.ComputeError as error:
            lines = [ln.strip() for ln in str(error).splitlines() if ln.startswith("error:")]
            detail = lines[0].removeprefix("error: ") if lines else None
            raise c.error(node, "invalid regular expression", detail) from None
        expr = value.str.contains(regex)
    return merge(expr, [inner])
