"""Date/time, JSON and hashing functions of mapping expressions.

* ``date_trunc``/``extract`` work in UTC, the engine's session time zone (Postgres sources
  deliver ``timestamptz`` as UTC; naive ``timestamp`` values are taken as they are).
* ``now()``/``current_timestamp`` is the time the batch is mapped, one value per batch (like
  Postgres' transaction time). For the source's commit time use the ``_ts`` column.
* ``->``/``->>``/``#>``/``#>>`` read JSON text columns (Postgres json/jsonb) *and* documents
  (Mongo sub-documents arrive as struct columns), so one mapping works for both sources.
* ``md5``/``sha256``/``sha512`` return lower-case hex text, for masking; they need the
  ``polars-hash`` package, imported on first use.
"""

from __future__ import annotations

import datetime as dt
import re

import polars as pl
from sqlglot import exp
from syncengine.mappings.casts import to_text
from syncengine.mappings.compiler import NOW_COLUMN, Compiled, ExprCompiler, handles, merge
from syncengine.mappings.errors import ExpressionError

_TRUNC = {
    "MICROSECOND": "1us",
    "MICROSECONDS": "1us",
    "MILLISECOND": "1ms",
    "MILLISECONDS": "1ms",
    "SECOND": "1s",
    "MINUTE": "1m",
    "HOUR": "1h",
    "DAY": "1d",
    "WEEK": "1w",
    "MONTH": "1mo",
    "QUARTER": "1q",
    "YEAR": "1y",
    "DECADE": "10y",
}
_INTERVAL_SECONDS = {
    "MICROSECOND": 1e-6,
    "MILLISECOND": 1e-3,
    "SECOND": 1,
    "MINUTE": 60,
    "HOUR": 3600,
    "DAY": 86400,
    "WEEK": 604800,
}


def _unit(c: ExprCompiler, node: exp.Expression | None) -> str:
    return str(c.literal_value(node)).upper()


def _as_datetime(c: ExprCompiler, compiled: Compiled) -> pl.Expr:
    dtype = c.dtype(compiled.expr)
    return compiled.expr.cast(pl.Datetime("us")) if dtype == pl.Date else compiled.expr


@handles(exp.TimestampTrunc, exp.DateTrunc)
def _date_trunc(c: ExprCompiler, node: exp.Expression) -> Compiled:
    inner = c.node(node.this)
    unit = _unit(c, node.args.get("unit"))
    every = _TRUNC.get(unit) or _TRUNC.get(unit.rstrip("S"))
    if every is None:
        raise c.error(node, f"date_trunc: unsupported unit '{unit.lower()}'")
    return merge(_as_datetime(c, inner).dt.truncate(every), [inner])


def _extract_expr(value: pl.Expr, unit: str) -> pl.Expr | None:
    fraction = value.dt.microsecond().cast(pl.Float64) / 1e6
    parts: dict[str, pl.Expr] = {
        "YEAR": value.dt.year(),
        "MONTH": value.dt.month(),
        "DAY": value.dt.day(),
        "HOUR": value.dt.hour(),
        "MINUTE": value.dt.minute(),
        "SECOND": value.dt.second().cast(pl.Float64) + fraction,
        "MILLISECONDS": (value.dt.second().cast(pl.Float64) + fraction) * 1000,
        "MICROSECONDS": value.dt.second().cast(pl.Int64) * 1_000_000 + value.dt.microsecond(),
        "DOW": value.dt.weekday() % 7,
        "ISODOW": value.dt.weekday(),
        "DOY": value.dt.ordinal_day(),
        "WEEK": value.dt.week(),
        "QUARTER": value.dt.quarter(),
        "EPOCH": value.dt.epoch("us").cast(pl.Float64) / 1e6,
    }
    aliases = {"DAYOFWEEK": "DOW", "DAYOFYEAR": "DOY", "MILLISECOND": "MILLISECONDS"}
    return parts.get(aliases.get(unit, unit))


@handles(exp.Extract)
def _extract(c: ExprCompiler, node: exp.Expression) -> Compiled:
    unit = _unit(c, node.this)
    inner = c.node(node.expression)
    expr = _extract_expr(_as_datetime(c, inner), unit)
    if expr is None:
        raise c.error(node, f"extract: unsupported field '{unit.lower()}'")
    return merge(expr, [inner])


@handles(exp.CurrentTimestamp, exp.CurrentDate)
def _now(c: ExprCompiler, node: exp.Expression) -> Compiled:
    now = pl.col(NOW_COLUMN)
    return Compiled(now.dt.date() if isinstance(node, exp.CurrentDate) else now, uses_now=True)


@handles(exp.Interval)
def _interval(c: ExprCompiler, node: exp.Expression) -> Compiled:
    amount_text = str(c.literal_value(node.this))
    unit = _unit(c, node.args.get("unit")) if node.args.get("unit") else ""
    if not unit:
        match = re.fullmatch(r"\s*(-?[\d.]+)\s*([a-zA-Z]+)\s*", amount_text)
        if match is None:
            raise c.error(node, f"unsupported interval '{amount_text}'")
        amount_text, unit = match.group(1), match.group(2).upper()
    seconds = _INTERVAL_SECONDS.get(unit.rstrip("S"))
    if seconds is None:
        raise c.error(node, f"unsupported interval unit '{unit.lower()}' (months/years vary)")
    delta = dt.timedelta(seconds=float(amount_text) * seconds)
    return Compiled(pl.lit(delta, dtype=pl.Duration("us")))


# -- JSON -----------------------------------------------------------------------------------

Segment = str | int


def _path_segments(c: ExprCompiler, node: exp.Expression) -> list[Segment]:
    if isinstance(node, exp.JSONPath):
        out: list[Segment] = []
        for part in node.expressions:
            if isinstance(part, exp.JSONPathKey):
                out.append(str(part.this))
            elif isinstance(part, exp.JSONPathSubscript) and isinstance(part.this, int):
                out.append(part.this)
            elif not isinstance(part, exp.JSONPathRoot):
                raise c.error(node, "unsupported JSON path step")
        return out
    value = c.literal_value(node)
    if isinstance(value, int):
        return [value]
    text = str(value)
    if text.startswith("{") and text.endswith("}"):  # #> '{a,0}'
        return [int(p) if p.strip().isdigit() else p.strip() for p in text[1:-1].split(",")]
    return [text]


def _json_path(segments: list[Segment]) -> str:
    steps = []
    for seg in segments:
        if isinstance(seg, int):
            steps.append(f"[{seg}]")
        elif "'" in seg or "\\" in seg:
            raise ExpressionError(f"unsupported JSON key {seg!r}")
        else:
            steps.append(f"['{seg}']")
    return "$" + "".join(steps)


_JSON_NODES = (exp.JSONExtract, exp.JSONExtractScalar, exp.JSONBExtract, exp.JSONBExtractScalar)


@handles(*_JSON_NODES)
def _json(c: ExprCompiler, node: exp.Expression) -> Compiled:
    as_text = isinstance(node, exp.JSONExtractScalar | exp.JSONBExtractScalar)
    segments: list[Segment] = []
    base: exp.Expression = node
    while isinstance(base, _JSON_NODES):
        segments = _path_segments(c, base.expression) + segments
        base = base.this
    inner = c.node(base)
    dtype = c.dtype(inner.expr)
    if dtype is None or dtype == pl.String:
        try:
            expr = inner.expr.str.json_path_match(_json_path(segments))
        except ExpressionError as error:
            raise c.error(node, error.message) from None
        return merge(expr, [inner], pg_type=None if as_text else "jsonb")
    expr = inner.expr
    for seg in segments:
        step = _json_step(expr, dtype, seg)
        if step is None:
            return merge(pl.lit(None, dtype=pl.String), [inner])
        expr, dtype = step
    if as_text:
        expr = to_text(expr, dtype)
    return merge(expr, [inner])


def _json_step(
    expr: pl.Expr, dtype: pl.DataType | None, seg: Segment
) -> tuple[pl.Expr, pl.DataType | None] | None:
    """One path step into a struct field or a list item; None where the type has no such part."""
    if isinstance(dtype, pl.Struct) and isinstance(seg, str):
        fields = {f.name: f.dtype for f in dtype.fields}
        return (expr.struct.field(seg), _instance(fields[seg])) if seg in fields else None
    if isinstance(dtype, pl.List) and isinstance(seg, int):
        return expr.list.get(seg, null_on_oob=True), _instance(dtype.inner)
    return None


def _instance(dtype: object) -> pl.DataType | None:
    """Polars types a nested dtype as class-or-instance; its schemas hold instances."""
    return dtype if isinstance(dtype, pl.DataType) else None


# -- hashing --------------------------------------------------------------------------------


def _hash_namespace() -> None:
    try:
        import polars_hash  # noqa: F401  (registers the .chash/.nchash namespaces)
    except ImportError:  # pragma: no cover - a declared dependency
        raise ExpressionError(
            "md5/sha256 need the 'polars-hash' package: pip install 'polars-hash>=0.9'"
        ) from None


@handles(exp.MD5, exp.SHA2Digest, exp.SHA2, exp.SHA)
def _hash(c: ExprCompiler, node: exp.Expression) -> Compiled:
    _hash_namespace()
    inner = c.node(node.this)
    dtype = c.dtype(inner.expr)
    value = inner.expr if dtype in (None, pl.String) else to_text(inner.expr, dtype)
    if isinstance(node, exp.MD5):
        # polars_hash adds the .nchash/.chash namespaces at import time, unseen by mypy
        expr = value.nchash.md5()  # type: ignore[attr-defined]
    elif isinstance(node, exp.SHA):
        expr = value.nchash.sha1()  # type: ignore[attr-defined]
    else:
        bits = int(c.literal_value(node.args.get("length"))) if node.args.get("length") else 256
        if bits not in (224, 256, 384, 512):
            raise c.error(node, f"unsupported SHA-2 length {bits}")
        expr = getattr(value.chash, f"sha2_{bits}")()  # type: ignore[attr-defined]
    return merge(expr, [inner])
