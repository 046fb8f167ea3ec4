"""Canonical row images: one type per column, one JSON text, one hash.

Conflict detection compares rows that took different paths: an incoming change (mapped Arrow
types) and a row read back from the target (Postgres ``numeric`` → decimal, Mongo ``int64``,
timestamps with or without a zone). Both are cast to the :class:`TableSpec` schema first, so a
row has exactly one JSON text (Polars ``struct.json_encode``) and one hash whichever way it came.

The hash is Polars' string hash with a fixed seed over that JSON text: vectorized and the same
in every process. Long text and binary values enter the hashed JSON as a digest of their own
(:func:`row_hashes`): a 1 MB TOASTed value then costs one hashing pass, not a JSON encoding, a
null-member scan and a hash, several times a batch.

Polars does not promise the same hash across its versions, so a stored hash carries
:data:`HASH_TAG` (the Polars version and the hashing scheme); a stored hash with another tag is
recomputed from the stored JSON (decoded and re-hashed with this version) instead of being
trusted or reported as a conflict. That is why the shadow always keeps the row JSON (``base``),
not only the hash.

A Postgres column a batch carries as text (a value beyond its Arrow type, ``pg_carried``) is
hashed in its native form wherever a value has one (:func:`carried_columns`), so a key written
from a text batch and read back or changed in a native one hashes alike; a value with no native
form hashes as its text on a member of its own, which never equals a native value's hash and
does not depend on the form the batch gave the row's other columns.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa

from syncengine.codecs import pg_carried, pg_temporal, pg_text
from syncengine.codecs.arrow_numbers import EXACT_IN_DOUBLE
from syncengine.strategies.base import EXISTS
from syncengine.targets.base import TableSpec

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

    from syncengine.sources.postgres.columns import PgType

__all__ = [
    "EXISTS",
    "canonical",
    "carried_columns",
    "decode_rows",
    "encode_rows",
    "hash_texts",
    "row_hashes",
    "row_keys",
]

HASH_SEED = 0x5E11_C0DE
HASH_TAG = f"pl{pl.__version__}i:"  # d: null members not hashed, long values as digests;
# e: text-carried Postgres columns hashed in their native form; f: a value with no native form
# hashed on its own member (BEYOND), not the whole row as text; g: numbers hashed by value
# (an int and the double of the same value alike); h: decimals too, whatever their scale (a
# source's numeric(10,2) altered to numeric(20,4) sends 2.5000 for the 2.50 it sent before);
# i: a Mongo target's timestamps floored to milliseconds (targets/precision.py), stored ones
# too when recomputed here: a hash stored before held the source's microseconds

JSON_TYPES = {"json", "jsonb", "object", "array"}
"""``pg_type`` / ``bson_type`` field metadata values that mark a column holding JSON text."""


def json_columns(schema: pa.Schema) -> frozenset[str]:
    """String columns holding JSON documents (merged field by field, not as one value)."""
    out = set()
    for fld in schema:
        if not (pa.types.is_string(fld.type) or pa.types.is_large_string(fld.type)):
            if str(fld.type) != "extension<arrow.json>":
                continue  # a struct (Mongo sub-document) merges through Polars instead
        meta = {k.decode(): v.decode() for k, v in (fld.metadata or {}).items()}
        marked = meta.get("pg_type") in JSON_TYPES or meta.get("bson_type") in JSON_TYPES
        if marked or meta.get("json") == "true" or str(fld.type) == "extension<arrow.json>":
            out.add(fld.name)
    return frozenset(out)


def polars_schema(spec: TableSpec) -> dict[str, pl.DataType]:
    """The Polars dtypes of the spec's columns (through an empty Arrow table)."""
    empty = pl.from_arrow(spec.schema.empty_table())
    assert isinstance(empty, pl.DataFrame)
    return dict(empty.schema)


def canonical(table: pa.Table | pl.DataFrame, spec: TableSpec) -> pl.DataFrame:
    """``table`` with exactly the spec's columns, in order, each cast to the spec's type.

    Columns missing from ``table`` come back null. The cast is Arrow's (decimal → float,
    naive → UTC timestamps, struct fields by name), so a target may return its own types.
    """
    if isinstance(table, pl.DataFrame):
        table = table.to_arrow()
    columns = []
    for fld in spec.schema:
        if fld.name in table.column_names:
            column = table.column(fld.name)
            if column.type != fld.type and as_pg_text(column.type, fld):
                column = pg_text.as_text(column)  # as the source prints it, not Arrow's cast
            elif column.type != fld.type:
                column = column.cast(fld.type, safe=False)
            columns.append(column)
        else:
            columns.append(pa.nulls(table.num_rows, fld.type))
    frame = pl.from_arrow(pa.Table.from_arrays(columns, schema=_plain(spec.schema)))
    assert isinstance(frame, pl.DataFrame)
    return frame


def as_pg_text(have: pa.DataType, want: pa.Field) -> bool:
    """A native column (a target's read-back) for a spec column this batch carries as text."""
    return not pg_text.is_text(have) and pg_carried.carried(want) is not None


def carried_columns(schema: pa.Schema) -> dict[str, PgType]:
    """The spec's columns this batch carries as Postgres text, with their native PgType (for
    :func:`row_hashes`); empty, after a schema check only, for an ordinary batch."""
    out = {}
    for fld in schema:
        native = pg_carried.carried(fld)
        if native is not None:
            out[fld.name] = native
    return out


def _plain(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, f.type, True) for f in schema])


def _jsonable(columns: Iterable[str], schema: dict[str, pl.DataType]) -> list[pl.Expr]:
    """Binary is not JSON: it travels as base64 text (decoded back by :func:`decode_rows`)."""
    out = []
    for name in columns:
        expr = pl.col(name)
        if schema[name] == pl.Binary:
            expr = expr.bin.encode("base64")
        out.append(expr)
    return out


def encode_rows(frame: pl.DataFrame, columns: Sequence[str] | None = None) -> pl.Series:
    """One JSON object per row (keys in column order); vectorized."""
    columns = list(columns if columns is not None else frame.columns)
    if not frame.height:
        return pl.Series("json", [], dtype=pl.String)
    frame = _extreme_dates_as_text(frame, columns)
    exprs = _jsonable(columns, dict(frame.schema))
    return frame.select(pl.struct(exprs).struct.json_encode().alias("json")).to_series()


def _extreme_dates_as_text(frame: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """Dates and timestamps beyond years 1-9999 (Postgres infinity, BC) make Polars' JSON
    encoder panic: such columns become the text it would print, and Postgres text for the
    values it cannot (:func:`~syncengine.codecs.pg_temporal.json_text`)."""
    fixes = []
    for name in columns:
        dtype = frame.schema[name]
        if not (dtype == pl.Date or (isinstance(dtype, pl.Datetime) and dtype.time_unit == "us")):
            continue
        values = frame[name].to_arrow()
        if not pg_temporal.is_ordinary(values):
            fixes.append(pl.Series(name, pg_temporal.json_text(values), dtype=pl.String))
    return frame.with_columns(fixes) if fixes else frame


def decode_rows(
    texts: pl.Series | Sequence[str | None],
    schema: dict[str, pl.DataType],
    *,
    strict: bool = False,
) -> pl.DataFrame:
    """Inverse of :func:`encode_rows` for the given dtypes (nulls decode to all-null rows).

    A stored value a dtype cannot hold (a text batch's ``NaN`` or 2-D array under a native
    spec) decodes as null, or with ``strict`` raises ``ComputeError``."""
    series = texts if isinstance(texts, pl.Series) else pl.Series("json", texts, dtype=pl.String)
    if not series.len():
        return pl.DataFrame(schema=schema)
    # dates travel as text: encode_rows may have written Postgres text (infinity, BC) there,
    # or a value a batch carried as text (past 294247 AD): null here, a row seen as changed
    temporal = {
        n: t for n, t in _arrow_types(schema).items() if pa.types.is_date32(t) or _us_stamp(t)
    }
    wire: dict[str, pl.DataType] = {
        n: (pl.String() if t == pl.Binary or n in temporal else t) for n, t in schema.items()
    }
    try:
        frame = series.str.json_decode(dtype=pl.Struct(wire)).struct.unnest()
    except pl.exceptions.ComputeError:
        frame = _decode_leniently(series, wire, strict)
    if temporal:
        frame = frame.with_columns(
            pl.Series(
                n, pg_temporal.from_text(frame[n].to_arrow().cast(pa.string()), t, strict=False)
            )
            for n, t in temporal.items()
        )
    fixes = [pl.col(n).str.decode("base64") for n, t in schema.items() if t == pl.Binary]
    return frame.with_columns(fixes) if fixes else frame


def _decode_leniently(
    series: pl.Series, wire: dict[str, pl.DataType], strict: bool = False
) -> pl.DataFrame:
    """Rows stored when a text column held another type (a Postgres column whose values a
    batch carried as text, :mod:`syncengine.codecs.pg_text`): text columns take the stored JSON
    as it is (an array as its JSON text), the others decode as usual."""
    typed = {n: t for n, t in wire.items() if t != pl.String}
    frame = series.to_frame("__json")
    if typed:
        try:
            decoded = series.str.json_decode(dtype=pl.Struct(typed)).struct.unnest()
        except pl.exceptions.ComputeError:
            if strict:
                raise
            decoded = pl.DataFrame([_decode_column(series, n, t) for n, t in typed.items()])
        frame = pl.concat([frame, decoded], how="horizontal")
    texts = [
        series.str.json_path_match("$['" + n.replace("'", "\\'") + "']").alias(n)
        for n, t in wire.items()
        if t == pl.String
    ]
    return frame.with_columns(texts).select(list(wire))


def _decode_column(series: pl.Series, name: str, dtype: pl.DataType) -> pl.Series:
    """One typed column of the stored rows; a value it cannot hold (a text batch's ``NaN`` or
    2-D array under a native spec: stored rows read back for conflicts only) is null, the
    row then seen as changed."""
    try:
        return series.str.json_decode(dtype=pl.Struct({name: dtype})).struct.field(name)
    except pl.exceptions.ComputeError:
        pass
    values = []
    for text in series:  # the rare failing column of rows already set aside
        value = None if text is None else json.loads(text).get(name)
        try:
            values.append(pl.Series(name, [value], dtype=dtype))
        except (TypeError, ValueError, pl.exceptions.PolarsError):
            values.append(pl.Series(name, [None], dtype=dtype))
    return pl.concat(values) if values else pl.Series(name, [], dtype=dtype)


def _us_stamp(t: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(t) and t.unit == "us")


def _arrow_types(schema: dict[str, pl.DataType]) -> dict[str, pa.DataType]:
    empty = pl.DataFrame(schema=schema).to_arrow()
    return {f.name: f.type for f in empty.schema}


# An object member whose value is null: `,"key":null` (any member but the first) and
# `{"key":null,` / `{"key":null` (the first). In canonical JSON an unescaped quote only opens or
# closes a string, so these match object members, never text inside a string value.
_NULL_MEMBER = r',"(?:[^"\\]|\\.)*":null'
_FIRST_NULL_MEMBER = r'\{"(?:[^"\\]|\\.)*":null,?'


def without_nulls(texts: pl.Series) -> pl.Series:
    """JSON texts with null members removed, at every depth.

    For conflict detection a null field and a missing one are the same row: a document source's
    batches carry different column sets, and a column a batch lacks reads as null.
    """
    return texts.str.replace_all(_NULL_MEMBER, "").str.replace_all(_FIRST_NULL_MEMBER, "{")


def hash_texts(texts: pl.Series) -> pl.Series:
    """``HASH_TAG`` + the seeded hash of each JSON text, null members ignored (null stays
    null)."""
    hashed = without_nulls(texts).hash(seed=HASH_SEED).cast(pl.String)
    return pl.select(
        pl.when(texts.is_not_null()).then(pl.lit(HASH_TAG) + hashed).alias("row_hash")
    ).to_series()


DIGEST_ABOVE = 1024
"""Text or binary values longer than this many bytes are hashed as a digest of the value."""


def row_hashes(
    frame: pl.DataFrame, columns: Sequence[str], carried: Mapping[str, PgType] | None = None
) -> pl.Series:
    """``HASH_TAG`` + a hash per row of ``frame`` (spec columns + ``_exists``), null where the
    row does not exist; two rows hash alike when their values are equal (null = missing).

    Every text value is hashed as ``s:`` + the text, or ``h:`` + its own hash when longer than
    :data:`DIGEST_ABOVE` bytes (binary: ``b:`` + base64, or ``h:`` + hash); the prefixes keep a
    short text from ever equalling a long one's digest.

    ``carried`` (:func:`carried_columns`): text columns hashed as their native values; a value
    with none is hashed as its text, on a member of its own (:func:`_restored`).
    """
    if not frame.height:
        return pl.Series("row_hash", [], dtype=pl.String)
    restored = _restored(frame, carried or {})
    if restored is not None:
        frame, beyond = restored
        columns = [*columns, *beyond]
    texts = _row_texts(frame, columns)
    return pl.select(pl.when(frame[EXISTS]).then(hash_texts(texts))).to_series().alias("row_hash")


def _row_texts(frame: pl.DataFrame, columns: Sequence[str]) -> pl.Series:
    digested = frame.select(_digest(name, frame.schema[name]) for name in columns)
    return encode_rows(digested, columns)


BEYOND = "\u0000"
"""Prefix of the hashed member that holds a value with no native form (no column has it)."""


def _restored(
    frame: pl.DataFrame, carried: Mapping[str, PgType]
) -> tuple[pl.DataFrame, list[str]] | None:
    """``frame`` with its text-carried columns in their native type, null where a value has
    none, and per such column a member ``BEYOND + name`` holding those values' text (null
    elsewhere, so a row without one hashes as its native form does); None when no column is
    text here. Each value is thus hashed by itself, whatever form the batch gave the others."""
    names = [n for n in carried if n in frame.columns and frame.schema[n] == pl.String]
    if not names:
        return None
    natives, texts = [], []
    for name in names:
        values, none = pg_carried.to_native(frame[name].to_arrow(), carried[name])
        natives.append(pl.Series(name, values))
        beyond = pl.select(pl.when(pl.Series(none)).then(frame[name])).to_series()
        texts.append(beyond.alias(BEYOND + name))
    return frame.with_columns(*natives, *texts), [t.name for t in texts]


def _numbers_by_value(expr: pl.Expr, dtype: PolarsDataType) -> pl.Expr | None:
    """``expr`` with every number in it (at any depth) as its text, a whole double a double
    holds exactly as the int it equals, a decimal without trailing zeros; None when
    ``dtype`` holds no number.

    A schemaless source sends 5 as an int in one batch and 5.0 as a double in the next (a
    Node.js driver does), and the target holds one of them: one value, one hash. Top-level
    numbers become text no other value hashes as (text carries a prefix, :func:`_digest`)."""
    if dtype.is_integer():
        return expr.cast(pl.String)
    if isinstance(dtype, pl.Decimal):  # 2.50 and 2.5000 alike, 5.00 as the int 5
        text = expr.cast(pl.String)
        return (
            pl.when(text.str.contains(".", literal=True))
            .then(text.str.replace(r"\.?0+$", ""))
            .otherwise(text)
        )
    if dtype.is_float():
        whole = expr.is_finite() & (expr == expr.floor()) & (expr.abs() <= EXACT_IN_DOUBLE)
        integral = expr.cast(pl.Int64, strict=False).cast(pl.String)
        return pl.when(whole).then(integral).otherwise(expr.cast(pl.String))
    if isinstance(dtype, pl.List):
        inner = _numbers_by_value(pl.element(), dtype.inner)
        return None if inner is None else expr.list.eval(inner)
    if isinstance(dtype, pl.Struct):
        members = [
            (f.name, _numbers_by_value(expr.struct.field(f.name), f.dtype)) for f in dtype.fields
        ]
        if all(member is None for _, member in members):
            return None
        struct = pl.struct(
            (expr.struct.field(name) if member is None else member).alias(name)
            for name, member in members
        )
        return pl.when(expr.is_not_null()).then(struct)
    return None


def _digest(name: str, dtype: pl.DataType) -> pl.Expr:
    column = pl.col(name)
    numbers = _numbers_by_value(column, dtype)
    if numbers is not None:
        return numbers.alias(name)
    if dtype == pl.String:
        size, short = column.str.len_bytes(), pl.lit("s:") + column
    elif dtype == pl.Binary:
        size, short = column.bin.size(), pl.lit("b:") + column.bin.encode("base64")
    else:
        return column
    digest = pl.lit("h:") + column.hash(seed=HASH_SEED).cast(pl.String)
    return pl.when(size > DIGEST_ABOVE).then(digest).otherwise(short).alias(name)


def row_keys(frame: pl.DataFrame, key: Sequence[str]) -> pl.Series:
    """Canonical JSON of the key values, ``{"id":1}``: the shadow's and the queue's row key."""
    return encode_rows(frame, key).alias("row_key")


def retag_hashes(
    hashes: pl.Series,
    bases: pl.Series,
    schema: dict[str, pl.DataType],
    carried: Mapping[str, PgType] | None = None,
    floor: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
) -> pl.Series:
    """Stored hashes made by another Polars version, recomputed from the stored row JSON;
    ``floor``: the decoded rows made as precise as the target holds them (precision.py)."""
    stale = hashes.is_not_null() & ~hashes.str.starts_with(HASH_TAG)
    if not stale.any():
        return hashes
    idx = stale.arg_true()
    stored = bases.gather(idx)
    try:
        rows = decode_rows(stored, schema, strict=True)
    except pl.exceptions.ComputeError:
        # a stored value with no native form (a text batch's NaN, 2-D array) under a native
        # spec: the hashes stay stale, so those keys read as changed (a conflict), not a crash
        return hashes
    if floor is not None:
        rows = floor(rows)
    rows = rows.with_columns(stored.is_not_null().alias(EXISTS))
    return hashes.scatter(idx, row_hashes(rows, list(schema), carried))


def schema_to_text(schema: pa.Schema) -> str:
    """An Arrow schema as text (kept with a parked conflict, to apply its resolution later)."""
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def schema_from_text(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def loads(text: str | None) -> object:
    return None if text is None else json.loads(text)
