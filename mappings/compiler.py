"""Our own sqlglot AST → Polars expression compiler.

Why not let sqlglot execute or transpile to Polars SQL: the result must be the same for every
source, and the sources differ in shape (Mongo gives struct columns, Postgres gives JSON text),
so column resolution has to know the source schema. Each node compiles to a :class:`Compiled`:
the Polars expression, the source columns it reads (for "unsent" propagation: a value computed
from a column the source did not send is itself not sent) and the *checks*, boolean expressions
that are true on rows whose value could not be computed (failed cast, division by zero). Checks
turn into dead letters; they are vectorized like everything else.

Columns, literals and casts live here; predicates in :mod:`~syncengine.mappings.logic`,
arithmetic and named functions in :mod:`~syncengine.mappings.functions` and
:mod:`~syncengine.mappings.temporal`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl
from sqlglot import exp
from syncengine.mappings import casts
from syncengine.mappings.errors import ExpressionError
from syncengine.mappings.parse import function_name, parse_expression, position_of

from syncengine.changes import BEFORE_PREFIX, UNSENT_PREFIX

#: Column holding the apply time, added to a batch only when an expression calls now().
NOW_COLUMN = "__now"
META_DTYPES = {
    "_op": pl.String,
    "_pos": pl.String,
    "_ts": pl.Datetime("us", "UTC"),
    "_txid": pl.Int64,
    NOW_COLUMN: pl.Datetime("us", "UTC"),
}
Missing = Literal["error", "null"]


@dataclass(frozen=True)
class Check:
    failed: pl.Expr
    reason: str


@dataclass(frozen=True)
class Compiled:
    expr: pl.Expr
    deps: frozenset[str] = frozenset()
    checks: tuple[Check, ...] = ()
    #: Postgres type of the result when the expression fixes it (a cast, ``->``)
    pg_type: str | None = None
    #: the source column when the expression is a plain reference to one (metadata passes)
    column: str | None = None
    uses_now: bool = False

    def guarded(self, taken: pl.Expr) -> tuple[Check, ...]:
        """The checks, counted only where ``taken`` (the branch that evaluates us) is true."""
        return tuple(Check(c.failed & taken, c.reason) for c in self.checks)


def merge(expr: pl.Expr, parts: Iterable[Compiled], pg_type: str | None = None) -> Compiled:
    """A node built from ``parts``: their dependencies and checks carry over."""
    parts = list(parts)
    return Compiled(
        expr,
        frozenset().union(*(p.deps for p in parts)),
        tuple(c for p in parts for c in p.checks),
        pg_type=pg_type,
        uses_now=any(p.uses_now for p in parts),
    )


Handler = Callable[["ExprCompiler", exp.Expression], Compiled]
OPERATORS: dict[type[exp.Expression], Handler] = {}


def handles(*kinds: type[exp.Expression]) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for kind in kinds:
            OPERATORS[kind] = fn
        return fn

    return register


@dataclass
class ExprCompiler:
    """Compiles the expressions of one mapping against one source schema.

    ``schema`` None means "not known yet" (config validation): columns are not checked and no
    types are inferred, but syntax and functions are.
    """

    schema: pl.Schema | None
    dialect: str = "postgres"
    missing: Missing = "error"
    #: how a top-level source column is read (before-images and fills swap this)
    ref: Callable[[str], pl.Expr] = pl.col
    #: text columns that hold exact numbers (Postgres ``numeric`` without a precision that
    #: fits Arrow, Mongo decimals beyond 38 digits): read as numbers inside expressions
    text_numbers: frozenset[str] = frozenset()
    text: str = ""
    _lazy: pl.LazyFrame | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.schema is not None:
            full: dict[str, Any] = dict(self.schema)
            for name, dtype in self.schema.items():
                full[BEFORE_PREFIX + name] = dtype
                full[UNSENT_PREFIX + name] = pl.Boolean
            for name, meta_type in META_DTYPES.items():
                full.setdefault(name, meta_type)
            self._lazy = pl.LazyFrame(schema=full)

    def compile(self, text: str) -> Compiled:
        self.text = text
        return self.node(parse_expression(text, self.dialect))

    def node(self, node: exp.Expression) -> Compiled:
        handler = OPERATORS.get(type(node))
        if handler is None:
            if isinstance(node, exp.Anonymous):
                raise self.error(node, f"unknown function '{function_name(node)}'")
            if isinstance(node, exp.Func):
                raise self.error(node, f"unsupported function '{function_name(node)}'")
            raise self.error(node, f"unsupported expression '{node.sql(self.dialect)}'")
        out = handler(self, node)
        if node.args.get("negate"):
            out = merge(~out.expr, [out])
        return out

    # -- helpers for handlers -----------------------------------------------------------

    def error(
        self, node: exp.Expression, message: str, detail: str | None = None
    ) -> ExpressionError:
        line, column = position_of(node, self.text, self.dialect)
        return ExpressionError(message, line, column, detail)

    def dtype(self, expr: pl.Expr) -> pl.DataType | None:
        """The result type of ``expr`` over the source schema (None when unknown)."""
        if self._lazy is None:
            return None
        try:
            return self._lazy.select(expr.alias("x")).collect_schema()["x"]
        except Exception:
            return None

    def result_type(self, node: exp.Expression, compiled: Compiled) -> pl.DataType | None:
        """Like :meth:`dtype` but a type error is reported against ``node``."""
        if self._lazy is None:
            return None
        try:
            return self._lazy.select(compiled.expr.alias("x")).collect_schema()["x"]
        except Exception as error:
            reason = str(error).strip().splitlines()[0]
            what = f"cannot compute '{node.sql(self.dialect)}'"
            raise self.error(node, what, reason) from None

    def args(self, node: exp.Expression, *names: str) -> list[Compiled]:
        return [self.node(node.args[n]) for n in names if node.args.get(n) is not None]

    def number(self, node: exp.Expression) -> int | float:
        """A numeric literal's value. The parser takes any run of digits and dots for one
        (``.0.``): such text is the expression's error, not a traceback."""
        text = node.this
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            raise self.error(node, f"'{text}' is not a number") from None

    def literal_value(self, node: exp.Expression | None) -> str | int | float:
        """The Python value of a literal argument (functions that need a constant)."""
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Literal):
            return node.this if node.is_string else self.number(node)
        if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
            return -self.number(node.this)
        if isinstance(node, exp.Var):
            return node.name
        raise self.error(node or exp.Null(), "expected a constant here")


# -- columns and literals -------------------------------------------------------------------


def _path(node: exp.Expression) -> list[str]:
    if isinstance(node, exp.Dot):
        return [*_path(node.this), node.expression.name]
    if isinstance(node, exp.Column):
        return [part.name for part in node.parts]
    raise TypeError(f"not a column reference: {node!r}")  # _column admits Column and Dot only


@handles(exp.Column, exp.Dot)
def _column(c: ExprCompiler, node: exp.Expression) -> Compiled:
    if isinstance(node, exp.Dot) and not isinstance(node.this, exp.Column | exp.Dot):
        raise c.error(node, f"unsupported expression '{node.sql(c.dialect)}'")
    path = _path(node)
    top = path[0]
    if c.schema is None or top in META_DTYPES:
        expr = pl.col(top) if top in META_DTYPES else c.ref(top)
        for part in path[1:]:
            expr = expr.struct.field(part)
        deps = frozenset() if top in META_DTYPES else frozenset({".".join(path)})
        return Compiled(expr, deps, column=top if len(path) == 1 else None)
    if top not in c.schema:
        dotted = ".".join(path)
        if dotted in c.schema:
            return Compiled(c.ref(dotted), frozenset({dotted}), column=dotted)
        return _missing(c, node, top)
    expr, dtype = c.ref(top), cast_any(c.schema[top])
    for depth, part in enumerate(path[1:], start=1):
        if isinstance(dtype, pl.Struct):
            fields = {f.name: f.dtype for f in dtype.fields}
            if part not in fields:
                return _missing(c, node, ".".join(path[: depth + 1]))
            expr, dtype = expr.struct.field(part), fields[part]
        elif dtype == pl.String:
            rest = "".join(f"['{p}']" for p in path[depth:])
            return Compiled(expr.str.json_path_match("$" + rest), frozenset({".".join(path)}))
        else:
            raise c.error(node, f"column '{'.'.join(path[:depth])}' is not a document")
    if len(path) == 1 and top in c.text_numbers:
        number = expr.cast(pl.Decimal(*casts.DEFAULT_NUMERIC), strict=False)
        failed = Check(number.is_null() & expr.is_not_null(), "numeric value out of range")
        return Compiled(number, frozenset({top}), (failed,), column=top)
    column = top if len(path) == 1 else None
    return Compiled(expr, frozenset({".".join(path)}), column=column)


def cast_any(value: object) -> Any:
    """A Polars dtype as ``Any`` (instances and classes mix in Polars' own typing)."""
    return value


def _missing(c: ExprCompiler, node: exp.Expression, name: str) -> Compiled:
    if c.missing == "null":
        return Compiled(pl.lit(None), frozenset({name}))
    raise c.error(node, f"unknown column '{name}'")


@handles(exp.Literal)
def _literal(c: ExprCompiler, node: exp.Expression) -> Compiled:
    if node.is_string:
        return Compiled(pl.lit(node.this, dtype=pl.String))
    value = c.number(node)
    # Integer constants are 64-bit so that ``int_col * 1000`` widens instead of wrapping
    # around silently (Postgres would raise "integer out of range").
    if isinstance(value, int) and -(2**63) <= value < 2**63:
        return Compiled(pl.lit(value, dtype=pl.Int64))
    return Compiled(pl.lit(float(value), dtype=pl.Float64))


@handles(exp.Null)
def _null(c: ExprCompiler, node: exp.Expression) -> Compiled:
    return Compiled(pl.lit(None))


@handles(exp.Boolean)
def _boolean(c: ExprCompiler, node: exp.Expression) -> Compiled:
    return Compiled(pl.lit(bool(node.this), dtype=pl.Boolean))


@handles(exp.Paren)
def _paren(c: ExprCompiler, node: exp.Expression) -> Compiled:
    return c.node(node.this)


@handles(exp.Cast, exp.TryCast)
def _cast(c: ExprCompiler, node: exp.Expression) -> Compiled:
    inner = c.node(node.this)
    try:
        result = casts.cast(inner.expr, c.dtype(inner.expr), node.args["to"])
    except ExpressionError as error:
        raise c.error(node, error.message) from None
    checks = inner.checks
    safe = isinstance(node, exp.TryCast) or bool(node.args.get("safe"))
    if result.failed is not None and not safe:
        checks += (Check(result.failed, f"cannot cast value to {result.pg_type}"),)
    return Compiled(result.expr, inner.deps, checks, result.pg_type, uses_now=inner.uses_now)


# Named functions register themselves into OPERATORS on import.
from syncengine.mappings import functions, logic, temporal  # noqa: E402, F401
