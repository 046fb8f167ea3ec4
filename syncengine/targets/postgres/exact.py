"""Numeric columns that keep every value exact when a schemaless source changes a field's type.

A Mongo field may hold ints in the documents that created its column and doubles later, or
the reverse. A double holds an integer exactly only up to ±2^53 (a ``real`` up to ±2^24), so
neither "integer column → double precision" nor "integers into a double precision column" is
safe in general: 2^60 + 1 becomes 2^60, silently. The rules, under
``on_schema_change: add``:

* an integer column that is sent fractions becomes ``double precision`` when every value it
  holds fits one exactly (one scan; the type change rewrites the table anyway), else
  ``numeric``;
* a floating-point column that is sent an integer beyond its exact range becomes ``numeric``;
  an integer column sent a fraction by a field carried as JSON text (a long beyond 2^53
  beside a double in one group) widens as above. Both are checked per write, vectorized,
  only for integer and JSON fields written into numeric columns: a table's spec is ensured
  once per schema, so the values that need a wider column can come later.

``numeric`` is converted from a double's shortest round-trip text (``v::text::numeric``), so
0.1 stays 0.1 rather than the 15 significant digits a plain cast keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from syncengine.codecs.arrow_numbers import EXACT_IN_DOUBLE

INTEGER_TYPES = frozenset({"smallint", "integer", "bigint"})

#: float column type → the largest integer magnitude it holds exactly (2^mantissa bits)
EXACT_INTEGERS = {"double precision": EXACT_IN_DOUBLE, "real": 2**24}


@dataclass(frozen=True)
class Numbers:
    """What one write sends into a numeric column: the extreme integers (None: no integer)
    and whether a value has a fraction or an exponent (an integer column cannot hold it)."""

    low: int | None
    high: int | None
    fractions: bool

    def beyond(self, limit: int) -> bool:
        """Whether an integer lies outside ±``limit``."""
        return (
            self.low is not None
            and self.high is not None
            and (self.low < -limit or self.high > limit)
        )


_INTEGER_TEXT = r"^-?[0-9]+$"
_NUMBER_TEXT = r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"


def numbers_of(column: pa.ChunkedArray, field: pa.Field) -> Numbers | None:
    """The numbers of an integer column, or of a Mongo field carried as JSON text (a long
    beyond 2^53 beside a double in one group: their JSON numbers); None for other columns."""
    if pa.types.is_integer(field.type):
        low, high = pc.min_max(column).values()
        return Numbers(low.as_py(), high.as_py(), fractions=False)
    if (field.metadata or {}).get(b"bson_type") != b"json":
        return None
    integral = pc.fill_null(pc.match_substring_regex(column, _INTEGER_TEXT), False)
    number = pc.fill_null(pc.match_substring_regex(column, _NUMBER_TEXT), False)
    fractions = bool(pc.any(pc.and_(number, pc.invert(integral))).as_py())
    ints = pc.filter(column, integral)
    if not len(ints):
        return Numbers(None, None, fractions)
    try:
        low, high = pc.min_max(pc.cast(ints, pa.decimal128(38, 0))).values()
    except pa.ArrowInvalid:  # more than 38 digits: beyond every limit here
        return Numbers(-(10**38), 10**38, fractions)
    return Numbers(int(low.as_py()), int(high.as_py()), fractions)


def widenings(
    data: pa.Table, spec: pa.Schema, columns: dict[str, str], key: tuple[str, ...]
) -> dict[str, Numbers]:
    """The non-key integer and floating-point columns ``data`` sends a number the column
    cannot hold exactly: a fraction into an integer column (only JSON-carried values get
    there; a double field is widened when its table is ensured), an integer beyond a
    float column's exact range. ``spec``: the table's fields, whose metadata says which
    are JSON (the batch's own fields carry none)."""
    found = {}
    for field in data.schema:
        current = columns.get(field.name, "")
        if field.name in key or (current not in INTEGER_TYPES and current not in EXACT_INTEGERS):
            continue
        if current in INTEGER_TYPES and pa.types.is_integer(field.type):
            continue  # the common case, decided without reading a value
        index = spec.get_field_index(field.name)
        if index >= 0:
            field = field.with_metadata(spec.field(index).metadata)
        numbers = numbers_of(data.column(field.name), field)
        if numbers is None:
            continue
        if current in INTEGER_TYPES and numbers.fractions:
            found[field.name] = numbers
        elif current in EXACT_INTEGERS and numbers.beyond(EXACT_INTEGERS[current]):
            found[field.name] = numbers
    return found


async def wider_type(
    conn: psycopg.AsyncConnection,
    schema: str,
    table: str,
    column: str,
    current: str,
    numbers: Numbers,
) -> str:
    """What ``column`` (of type ``current``) becomes to hold ``numbers`` exactly."""
    if current in EXACT_INTEGERS or numbers.beyond(EXACT_IN_DOUBLE):
        return "numeric"
    return await type_for_fractions(conn, schema, table, column, current)


async def type_for_fractions(
    conn: psycopg.AsyncConnection, schema: str, table: str, column: str, current: str
) -> str:
    """What integer column ``column`` (of type ``current``) becomes to hold doubles too."""
    limit = EXACT_IN_DOUBLE
    if current != "bigint":  # smallint and integer values all fit a double
        return "double precision"
    cur = await conn.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE {} NOT BETWEEN %s AND %s)").format(
            sql.Identifier(schema, table), sql.Identifier(column)
        ),
        (-limit, limit),
    )
    row = await cur.fetchone()
    return "numeric" if row and row[0] else "double precision"


async def alter_type(
    conn: psycopg.AsyncConnection, schema: str, table: str, column: str, wider: str
) -> None:
    """Change ``column`` to ``wider``; a float column to ``numeric`` through its values'
    shortest round-trip text (``extra_float_digits`` > 0 asks for it on any server setting)."""
    alter = sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {}").format(
        sql.Identifier(schema, table), sql.Identifier(column), sql.SQL(wider)
    )
    if wider == "numeric":
        await conn.execute("SET LOCAL extra_float_digits = 1")
        alter = sql.SQL("{} USING {}::text::numeric").format(alter, sql.Identifier(column))
    await conn.execute(alter)
