"""Arrow → PostgreSQL: column types for DDL, and the CSV text that ``COPY`` reads.

A field's ``pg_type`` metadata (set by the Postgres source, e.g. ``b"numeric(12,2)"``) wins, so
Postgres → Postgres keeps exact types; otherwise :data:`TYPE_MAP` decides. Values travel as
CSV written by Arrow's C++ writer (vectorized, no per-row Python); the few types CSV cannot
carry are first turned into Postgres text input forms with Polars expressions.
"""

from __future__ import annotations

import io
import re

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

from syncengine.codecs import pg_temporal
from syncengine.errors import FatalError

# A type name from metadata is spliced into DDL as SQL, so it must look like a type name.
_TYPE_NAME = re.compile(
    r'^[A-Za-z_][A-Za-z0-9_ ."]*(\([0-9, ]+\))?( with(out)? time zone)?(\[\])*$'
)


def _simple(t: pa.DataType) -> str | None:
    checks = [
        (pa.types.is_boolean, "boolean"),
        (pa.types.is_int8, "smallint"),
        (pa.types.is_int16, "smallint"),
        (pa.types.is_int32, "integer"),
        (pa.types.is_int64, "bigint"),
        (pa.types.is_uint8, "smallint"),
        (pa.types.is_uint16, "integer"),
        (pa.types.is_uint32, "bigint"),
        (pa.types.is_uint64, "numeric(20,0)"),
        (pa.types.is_float16, "real"),
        (pa.types.is_float32, "real"),
        (pa.types.is_float64, "double precision"),
        (pa.types.is_string, "text"),
        (pa.types.is_large_string, "text"),
        (pa.types.is_string_view, "text"),
        (pa.types.is_binary, "bytea"),
        (pa.types.is_large_binary, "bytea"),
        (pa.types.is_fixed_size_binary, "bytea"),
        (pa.types.is_date, "date"),
        (pa.types.is_time, "time"),
        (pa.types.is_duration, "interval"),
        (pa.types.is_struct, "jsonb"),
        (pa.types.is_map, "jsonb"),
        (pa.types.is_null, "text"),
    ]
    for check, name in checks:
        if check(t):
            return name
    return None


def pg_type_of(field: pa.Field) -> str:
    """The Postgres column type for an Arrow field (``pg_type`` metadata first)."""
    meta = field.metadata or {}
    declared = meta.get(b"pg_type")
    if declared:
        name: str = declared.decode()
        if not _TYPE_NAME.match(name):
            raise FatalError(f"column {field.name!r}: unusable pg_type metadata {name!r}")
        return name
    t = field.type
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz else "timestamp"
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        inner = _simple(t.value_type)
        nested = pa.types.is_struct(t.value_type) or pa.types.is_list(t.value_type)
        return "jsonb" if inner is None or nested or inner == "jsonb" else inner + "[]"
    simple = _simple(t)
    if simple is None:
        raise FatalError(f"column {field.name!r}: no Postgres type for Arrow type {t}")
    return simple


def type_sql(pg_type: str) -> sql.Composable:
    """A validated type name as SQL (types cannot be quoted as identifiers)."""
    if not _TYPE_NAME.match(pg_type):
        raise FatalError(f"unusable Postgres type name {pg_type!r}")
    return sql.SQL(pg_type)  # validated above


def _text_form(name: str, dtype: pl.DataType, pg_type: str) -> pl.Expr | None:
    """A Polars expression giving Postgres text input for types CSV cannot carry."""
    col = pl.col(name)
    if dtype == pl.Binary:
        return (pl.lit("\\x") + col.bin.encode("hex")).alias(name)
    if isinstance(dtype, pl.Duration):
        micros = col.dt.total_microseconds()
        return (micros.cast(pl.String) + pl.lit(" microseconds")).alias(name)
    if isinstance(dtype, pl.Struct):
        # a NULL struct must stay SQL NULL, not become the JSON text "null"
        return pl.when(col.is_null()).then(None).otherwise(col.struct.json_encode()).alias(name)
    if isinstance(dtype, pl.List | pl.Array):
        wrapped = pl.struct(col.alias("v")).struct.json_encode()
        body = wrapped.str.slice(5, wrapped.str.len_chars() - 6)  # strip {"v": … }
        if pg_type.endswith("[]"):
            # JSON arrays become array literals: [1,[2]] → {1,{2}}; JSON null reads as NULL.
            body = body.str.replace_all("[", "{", literal=True).str.replace_all(
                "]", "}", literal=True
            )
        return pl.when(col.is_null()).then(None).otherwise(body).alias(name)
    return None


def to_csv(table: pa.Table, pg_types: dict[str, str]) -> bytes:
    """Encode ``table`` as headerless CSV for ``COPY … (FORMAT csv)``.

    Arrow's writer quotes every string, so an empty string arrives as ``""`` and a NULL as an
    unquoted empty field, which is exactly how Postgres CSV tells them apart.
    """
    frame = pl.from_arrow(table, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    exprs = [
        e
        for name, dtype in frame.schema.items()
        if (e := _text_form(name, dtype, pg_types.get(name, ""))) is not None
    ]
    if exprs:
        frame = frame.with_columns(exprs)
    out = frame.to_arrow()
    for i, field in enumerate(out.schema):
        if pa.types.is_temporal(field.type) and not pa.types.is_time(field.type):
            if not pa.types.is_duration(field.type) and not pg_temporal.is_ordinary(out.column(i)):
                # infinity, BC, year 10000+: beyond Arrow's formatter, exact text instead
                out = out.set_column(i, field.name, pg_temporal.to_text(out.column(i)))
                continue
        if pa.types.is_timestamp(field.type) and field.type.tz:
            # Arrow's writer formats zoned timestamps ~30x slower than naive ones; the stored
            # instant is UTC, so write it naive with an explicit "+00".
            naive = out.column(i).cast(pa.timestamp(field.type.unit))
            text = pc.binary_join_element_wise(naive.cast(pa.string()), "+00", "")
            out = out.set_column(i, field.name, text)
    sink = io.BytesIO()
    pacsv.write_csv(out, sink, pacsv.WriteOptions(include_header=False))
    return sink.getvalue()
