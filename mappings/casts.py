"""SQL ``CAST`` / ``::`` as Polars expressions, with the null mask that marks failed rows.

Every cast is non-strict (a value that does not convert becomes null) and, where it can fail,
comes with a *failure mask* ``result IS NULL AND input IS NOT NULL``. The plan turns those masks
into dead letters, so a bad value sets one row aside instead of failing the batch, and the
detection stays vectorized. Conversions follow Postgres where it matters for equal results:
float → integer rounds half to even (numeric → integer half away from zero), ``'t'``,
``'yes'``, ``'on'`` are true, text → uuid accepts braces and missing hyphens and yields the
canonical lower-case form, and timestamps without an offset are taken as UTC (the engine's
session time zone).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from sqlglot import exp
from syncengine.mappings.errors import ExpressionError

T = exp.DataType.Type
INTEGERS = {T.TINYINT: pl.Int16, T.SMALLINT: pl.Int16, T.INT: pl.Int32, T.BIGINT: pl.Int64}
FLOATS = {T.FLOAT: pl.Float32, T.DOUBLE: pl.Float64}
TEXTS = {T.TEXT, T.VARCHAR, T.CHAR, T.NCHAR, T.NVARCHAR, T.NAME}
PG_NAMES = {
    T.TINYINT: "smallint",
    T.SMALLINT: "smallint",
    T.INT: "integer",
    T.BIGINT: "bigint",
    T.FLOAT: "real",
    T.DOUBLE: "double precision",
    T.BOOLEAN: "boolean",
    T.DATE: "date",
    T.TIMESTAMP: "timestamp",
    T.TIMESTAMPTZ: "timestamptz",
    T.JSON: "json",
    T.JSONB: "jsonb",
    T.UUID: "uuid",
    T.VARBINARY: "bytea",
    T.TEXT: "text",
}
#: Precision and scale of a bare ``numeric`` (Postgres' is unbounded; Arrow's tops out at 38).
DEFAULT_NUMERIC = (38, 9)
TRUE_WORDS = ["t", "true", "y", "yes", "on", "1"]
FALSE_WORDS = ["f", "false", "n", "no", "off", "0"]
_NAIVE_FORMATS = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d"]
_OFFSET_FORMATS = ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"]
_UUID_HEX = r"^[0-9a-f]{32}$"


@dataclass(frozen=True)
class Cast:
    expr: pl.Expr
    failed: pl.Expr | None  # true where a non-null input did not convert
    pg_type: str


def _params(dtype: exp.DataType) -> list[int]:
    return [int(p.sql()) for p in dtype.expressions]


def pg_type_name(dtype: exp.DataType) -> str:
    """The Postgres spelling of a cast target, for the ``pg_type`` field metadata."""
    kind = dtype.this
    params = _params(dtype) if dtype.expressions else []
    if kind == T.DECIMAL:
        decimal = _decimal(dtype)
        return f"numeric({decimal.precision},{decimal.scale})"
    if kind in (T.VARCHAR, T.CHAR) and params:
        return f"{'varchar' if kind == T.VARCHAR else 'char'}({params[0]})"
    return PG_NAMES.get(kind, "text" if kind in TEXTS else kind.value.lower())


def _decimal(dtype: exp.DataType) -> pl.Decimal:
    params = _params(dtype)
    if not params:
        return pl.Decimal(*DEFAULT_NUMERIC)
    return pl.Decimal(params[0], params[1] if len(params) > 1 else 0)


def to_datetime(expr: pl.Expr, time_zone: str | None) -> pl.Expr:
    """Text → timestamp: ISO forms with or without an offset (naive text is UTC)."""
    text = expr.str.strip_chars()
    parsed = [text.str.to_datetime(f, time_zone="UTC", strict=False) for f in _OFFSET_FORMATS]
    parsed += [
        text.str.to_datetime(f, time_unit="us", strict=False).dt.replace_time_zone("UTC")
        for f in _NAIVE_FORMATS
    ]
    out = pl.coalesce(parsed).dt.cast_time_unit("us")
    return out if time_zone else out.dt.replace_time_zone(None)


def to_text(expr: pl.Expr, src: pl.DataType | None) -> pl.Expr:
    """``expr`` (of Polars type ``src``) as text, the way ``CAST(… AS text)`` gives it: structs
    and lists as JSON, timestamps with ``+00`` when they have a zone, booleans as ``true`` /
    ``false`` (as Postgres prints them), anything else through Polars' string cast."""
    if isinstance(src, pl.Struct):
        return pl.when(expr.is_not_null()).then(expr.struct.json_encode())
    if isinstance(src, pl.List | pl.Array):
        encoded = pl.struct(expr.alias("v")).struct.json_encode()
        return pl.when(expr.is_not_null()).then(encoded.str.slice(5, encoded.str.len_chars() - 6))
    if isinstance(src, pl.Datetime):
        text = expr.dt.to_string("%Y-%m-%d %H:%M:%S%.f")
        return text + pl.lit("+00") if src.time_zone else text
    if src == pl.Boolean:
        return pl.when(expr).then(pl.lit("true")).when(~expr).then(pl.lit("false"))
    return expr.cast(pl.String, strict=False)


def _to_uuid(expr: pl.Expr, src: pl.DataType | None) -> pl.Expr:
    if src == pl.Binary:
        hexed = expr.bin.encode("hex")
    else:
        hexed = expr.cast(pl.String).str.to_lowercase().str.replace_all(r"[{}\-\s]", "")
    hexed = pl.when(hexed.str.contains(_UUID_HEX)).then(hexed)
    parts = [hexed.str.slice(a, b - a) for a, b in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32))]
    return pl.concat_str(parts, separator="-")


def cast(expr: pl.Expr, src: pl.DataType | None, to: exp.DataType) -> Cast:
    """``CAST(expr AS to)``; ``src`` is the input's Polars type when known."""
    kind = to.this
    pg_type = pg_type_name(to)
    out: pl.Expr
    if kind in INTEGERS or kind in FLOATS or kind == T.DECIMAL:
        target = INTEGERS.get(kind) or FLOATS.get(kind) or _decimal(to)
        value = expr.str.strip_chars() if src == pl.String else expr
        if kind in INTEGERS and src is not None and src.is_float():
            value = value.round(0, mode="half_to_even")  # as Postgres' float8 → int (rint)
        elif kind in INTEGERS and isinstance(src, pl.Decimal):
            value = value.round(0, mode="half_away_from_zero")
        out = value.cast(target, strict=False)
        if src == target:
            return Cast(expr, None, pg_type)
    elif kind in TEXTS:
        out = to_text(expr, src)
        if to.expressions:
            out = out.str.head(_params(to)[0])
        return Cast(out, None, pg_type)
    elif kind == T.BOOLEAN:
        if src == pl.Boolean:
            return Cast(expr, None, pg_type)
        if src is not None and src.is_numeric():
            return Cast(expr != 0, None, pg_type)
        words = expr.cast(pl.String).str.strip_chars().str.to_lowercase()
        out = pl.when(words.is_in(TRUE_WORDS)).then(True).when(words.is_in(FALSE_WORDS)).then(False)
    elif kind in (T.TIMESTAMP, T.TIMESTAMPTZ):
        zone = "UTC" if kind == T.TIMESTAMPTZ else None
        if isinstance(src, pl.Datetime):
            value = expr if src.time_zone else expr.dt.replace_time_zone("UTC")
            value = value.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
            out = value if zone else value.dt.replace_time_zone(None)
            return Cast(out, None, pg_type)
        if src == pl.Date:
            out = expr.cast(pl.Datetime("us"))
            return Cast(out.dt.replace_time_zone(zone) if zone else out, None, pg_type)
        out = to_datetime(expr.cast(pl.String), zone)
    elif kind == T.DATE:
        if isinstance(src, pl.Datetime):
            return Cast(expr.dt.date(), None, pg_type)
        out = to_datetime(expr.cast(pl.String), None).dt.date()
    elif kind == T.UUID:
        out = _to_uuid(expr, src)
    elif kind in (T.JSON, T.JSONB):
        return Cast(to_text(expr, src), None, pg_type)
    elif kind == T.VARBINARY:
        return Cast(expr.cast(pl.Binary), None, pg_type)
    else:
        raise ExpressionError(f"unsupported cast target type '{to.sql('postgres')}'")
    return Cast(out, out.is_null() & expr.is_not_null(), pg_type)
