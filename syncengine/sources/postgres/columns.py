"""Postgres types → Arrow types, and column-wise conversion of text values.

Both the stream (pgoutput text values) and the snapshot (``COPY … CSV``) deliver values in
Postgres' text output form. They are gathered per column into one Arrow string array and then
converted in a single vectorized cast (Arrow compute or Polars), never one Python object per
value. The session settings of :mod:`syncengine.pgsession` pin the text forms the casts rely on.

Every Arrow field carries the Postgres type as ``pg_type`` metadata (``b"numeric(12,2)"``) so
a Postgres target can recreate the exact type. The mapping is documented in
``docs/postgres-source.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from syncengine.codecs import pg_temporal
from syncengine.errors import FatalError

if TYPE_CHECKING:
    import polars as pl
else:
    from syncengine.deferred import polars as pl

log = logging.getLogger("syncengine.sources.postgres")


@dataclass(frozen=True, slots=True)
class PgType:
    """A column's Postgres type, its Arrow type and the converter that gets it there."""

    oid: int
    typmod: int
    name: str
    arrow: pa.DataType
    kind: str
    #: user-defined types the column needs, as ``pg_typedefs`` JSON (see :mod:`.usertypes`)
    defs: str = ""
    #: a generated column's expression (``pg_generated``; read with a table's shape only:
    #: the stream never sends these columns before Postgres 18)
    generated: str = ""

    def field(self, column: str, arrow: pa.DataType | None = None) -> pa.Field:
        """The column's field; ``arrow``: the type its values arrived as, when a batch carries
        them in their text form (see :func:`to_arrow`)."""
        meta = {"pg_type": self.name.encode()}
        if self.defs:
            meta["pg_typedefs"] = self.defs.encode()
        if self.generated:
            meta["pg_generated"] = self.generated.encode()
        return pa.field(column, arrow or self.arrow, metadata=meta)


# oid -> (format_type name, arrow type, converter kind)
_SCALARS: dict[int, tuple[str, pa.DataType, str]] = {
    16: ("boolean", pa.bool_(), "bool"),
    17: ("bytea", pa.binary(), "bytea"),
    18: ('"char"', pa.string(), "text"),
    19: ("name", pa.string(), "text"),
    20: ("bigint", pa.int64(), "cast"),
    21: ("smallint", pa.int16(), "cast"),
    23: ("integer", pa.int32(), "cast"),
    25: ("text", pa.string(), "text"),
    26: ("oid", pa.int64(), "cast"),
    114: ("json", pa.string(), "text"),
    142: ("xml", pa.string(), "text"),
    650: ("cidr", pa.string(), "text"),
    700: ("real", pa.float32(), "cast"),
    701: ("double precision", pa.float64(), "cast"),
    829: ("macaddr", pa.string(), "text"),
    869: ("inet", pa.string(), "text"),
    1042: ("character", pa.string(), "text"),
    1043: ("character varying", pa.string(), "text"),
    1082: ("date", pa.date32(), "temporal"),
    1083: ("time without time zone", pa.time64("us"), "time"),
    1114: ("timestamp without time zone", pa.timestamp("us"), "temporal"),
    1184: ("timestamp with time zone", pa.timestamp("us", tz="UTC"), "temporal"),
    1186: ("interval", pa.string(), "text"),
    1266: ("time with time zone", pa.string(), "text"),
    1700: ("numeric", pa.string(), "text"),
    2950: ("uuid", pa.string(), "text"),
    3802: ("jsonb", pa.string(), "text"),
}

# array oid -> element oid (only element types with a list mapping)
_ARRAYS: dict[int, int] = {
    1000: 16,
    1005: 21,
    1007: 23,
    1016: 20,
    1009: 25,
    1015: 1043,
    1014: 1042,
    1021: 700,
    1022: 701,
    2951: 2950,
}


def pg_type(
    oid: int, typmod: int, custom: Mapping[int, str] | None = None, defs: str = ""
) -> PgType:
    """The Arrow mapping of one column type; ``custom`` names non-builtin types (enums…),
    ``defs`` holds their definitions (:mod:`.usertypes`)."""
    if oid in _ARRAYS:
        element = pg_type(_ARRAYS[oid], -1)
        name = _with_modifier(element.name, _ARRAYS[oid], typmod) + "[]"
        kind = "list_text" if pa.types.is_string(element.arrow) else "list"
        return PgType(oid, typmod, name, pa.list_(element.arrow), kind)
    if oid == 1700 and typmod >= 4:
        precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (typmod - 4) & 0xFFFF
        name = f"numeric({precision},{scale})"
        if 0 < precision <= 38 and scale <= precision:
            return PgType(oid, typmod, name, pa.decimal128(precision, scale), "cast")
        return PgType(oid, typmod, name, pa.string(), "text")
    known = _SCALARS.get(oid)
    if known is None:
        name = (custom or {}).get(oid, f"oid:{oid}")
        return PgType(oid, typmod, name, pa.string(), "text", defs)
    name, arrow, kind = known
    return PgType(oid, typmod, _with_modifier(name, oid, typmod), arrow, kind)


def _with_modifier(name: str, oid: int, typmod: int) -> str:
    """``format_type`` spelling of length/precision modifiers."""
    if typmod < 0:
        return name
    if oid in (1042, 1043):
        return f"{name}({typmod - 4})"
    if oid in (1083, 1114, 1184, 1266):
        base, _, zone = name.partition(" ")
        return f"{base}({typmod}) {zone}"
    return name


def to_arrow(
    values: pa.Array, type_: PgType, column: str = "?", *, quiet: bool = False
) -> pa.Array:
    """Convert one column of text values (Arrow string/binary, nulls = SQL NULL); ``quiet``:
    no warning when they stay text (a caller that expects it: ``codecs.pg_carried``)."""
    if pa.types.is_binary(values.type):
        try:
            values = values.cast(pa.string())
        except pa.ArrowInvalid:
            # pgoutput sends text in the database encoding: a SQL_ASCII database can hold any
            # bytes, which have no faithful text form here
            raise FatalError(
                f"column {column}: a {type_.name} value is not valid UTF-8",
                hint="the source database's encoding is probably SQL_ASCII; convert the column "
                "to UTF8 in the source (or exclude it)",
            ) from None
    try:
        return _CONVERTERS[type_.kind](values, type_)
    except (pa.ArrowInvalid, pl.exceptions.PolarsError, ValueError) as exc:
        # A value the column's Arrow type cannot hold (time '24:00:00', a multi-dimensional
        # array, NaN in numeric(p,s)…): this batch carries the column in Postgres's own text
        # form, ``pg_type`` unchanged, so nothing is lost and a Postgres target reads it back
        # as the same type.
        if not quiet:
            _warn_text_form(column, type_, exc)
        return values


_warned: set[tuple[str, str]] = set()


def _warn_text_form(column: str, type_: PgType, exc: Exception) -> None:
    if (column, type_.name) in _warned:
        return
    _warned.add((column, type_.name))
    log.warning(
        "column %s: a %s value has no %s form (%s); batches holding such values carry the "
        "column as Postgres text (pg_type %s)",
        column,
        type_.name,
        type_.arrow,
        str(exc).splitlines()[0][:200],
        type_.name,
    )


def _text(values: pa.Array, type_: PgType) -> pa.Array:
    return values


def _cast(values: pa.Array, type_: PgType) -> pa.Array:
    return values.cast(type_.arrow)


def _temporal(values: pa.Array, type_: PgType) -> pa.Array:
    """Dates and timestamps: Arrow's cast, or, when a value is beyond it (infinity, BC, year
    10000+), the exact parser of :mod:`syncengine.codecs.pg_temporal`."""
    return pg_temporal.from_text(values, type_.arrow)


def _bool(values: pa.Array, type_: PgType) -> pa.Array:
    return pc.equal(values, "t")


def _series(values: pa.Array) -> pl.Series:
    series = pl.from_arrow(values)
    assert isinstance(series, pl.Series)
    return series


def _bytea(values: pa.Array, type_: PgType) -> pa.Array:
    decoded = _series(values).str.strip_prefix("\\x").str.decode("hex")
    return decoded.to_arrow().cast(pa.binary())


def _time(values: pa.Array, type_: PgType) -> pa.Array:
    parsed = _series(values).str.to_time("%H:%M:%S%.f", strict=True)
    return parsed.to_arrow().cast(pa.time64("us"))


def _list(values: pa.Array, type_: PgType) -> pa.Array:
    """One-dimensional arrays: strip braces, split, cast the elements."""
    _one_dimensional(values, type_)
    element = type_.arrow.value_type
    series = _series(values)
    frame = pl.DataFrame({"s": series})
    body = pl.when(pl.col("s") != "{}").then(
        pl.col("s").str.slice(1, pl.col("s").str.len_bytes() - 2)
    )
    words = body.str.split(",").list.eval(pl.when(pl.element() != "NULL").then(pl.element()))
    dtype = _series(pa.array([], element)).dtype
    if pa.types.is_boolean(element):
        items = words.list.eval(pl.element() == "t")
    else:
        items = words.list.eval(pl.element().cast(dtype))
    empty = pl.lit([], dtype=pl.List(dtype))
    out = frame.select(pl.when(pl.col("s") == "{}").then(empty).otherwise(items))
    return out.to_series().to_arrow().cast(type_.arrow)


def _one_dimensional(values: pa.Array, type_: PgType) -> None:
    """Refuse what a list cannot hold: ``{{1,2},{3,4}}`` or ``[0:1]={1,2}`` (bounds)."""
    nested = pc.or_(pc.starts_with(values, "{{"), pc.starts_with(values, "["))
    if pc.any(nested).as_py():
        raise ValueError(f"a multi-dimensional or explicitly bounded {type_.name} value")


def _list_text(values: pa.Array, type_: PgType) -> pa.Array:
    """Text arrays: elements may be quoted, so quoted values take the exact parser."""
    _one_dimensional(values, type_)
    if not pc.any(pc.match_substring(values, '"')).as_py():
        return _list(values, type_)
    parsed = [None if v is None else parse_text_array(v) for v in values.to_pylist()]
    return pa.array(parsed, type_.arrow)


def parse_text_array(text: str) -> list[str | None]:
    """A one-dimensional array literal with quoting (``{a,"b,c",NULL,"NULL"}``)."""
    if len(text) < 2 or text[0] != "{" or text[-1] != "}":
        raise ValueError(f"not an array literal: {text[:40]!r}")
    body, i = text[1:-1], 0
    items: list[str | None] = []
    if not body:
        return []
    while i <= len(body):
        if i < len(body) and body[i] == '"':
            out: list[str] = []
            i += 1
            while body[i] != '"':
                if body[i] == "\\":
                    i += 1
                out.append(body[i])
                i += 1
            items.append("".join(out))
            i += 2  # closing quote and comma
        else:
            end = body.find(",", i)
            end = len(body) if end < 0 else end
            word = body[i:end]
            items.append(None if word == "NULL" else word)
            i = end + 1
    return items


_CONVERTERS = {
    "text": _text,
    "cast": _cast,
    "temporal": _temporal,
    "bool": _bool,
    "bytea": _bytea,
    "time": _time,
    "list": _list,
    "list_text": _list_text,
}
