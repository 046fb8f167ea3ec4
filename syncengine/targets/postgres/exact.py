"""Numeric columns that keep every value exact when a schemaless source changes a field's type.

A Mongo field may hold ints in the documents that created its column and doubles later, or
the reverse. A double holds an integer exactly only up to ±2^53 (a ``real`` up to ±2^24), so
neither "integer column → double precision" nor "integers into a double precision column" is
safe in general: 2^60 + 1 becomes 2^60, silently. The rules, under
``on_schema_change: add``:

* an integer column that is sent fractions becomes ``double precision`` when every value it
  holds fits one exactly (one scan; the type change rewrites the table anyway), else
  ``numeric``;
* a floating-point column that is sent an integer beyond its exact range becomes ``numeric``,
  checked per write, vectorized, only for integer fields written into float columns: a
  table's spec is ensured once per schema, so the values that need a wider column can come
  later.

A field carried as JSON text (a long beyond 2^53 beside a double in one group) makes its
column ``jsonb`` instead, as a table its batch creates has (:mod:`.jsonpromote`; before session
35 its JSON numbers were checked here, and its other values refused or written in quotes).

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
    """The extreme integers one write sends into a column (None: no integer)."""

    low: int | None
    high: int | None

    def beyond(self, limit: int) -> bool:
        """Whether an integer lies outside ±``limit``."""
        return (
            self.low is not None
            and self.high is not None
            and (self.low < -limit or self.high > limit)
        )


def numbers_of(column: pa.ChunkedArray, field: pa.Field) -> Numbers | None:
    """The numbers of an integer column; None for other columns."""
    if not pa.types.is_integer(field.type):
        return None
    low, high = pc.min_max(column).values()
    return Numbers(low.as_py(), high.as_py())


def widenings(data: pa.Table, columns: dict[str, str], key: tuple[str, ...]) -> list[str]:
    """The non-key floating-point columns ``data`` sends an integer beyond their exact range:
    each becomes ``numeric`` (a double field into an integer column is widened when its
    table is ensured)."""
    found = []
    for field in data.schema:
        current = columns.get(field.name, "")
        if field.name in key or current not in EXACT_INTEGERS:
            continue
        numbers = numbers_of(data.column(field.name), field)
        if numbers is not None and numbers.beyond(EXACT_INTEGERS[current]):
            found.append(field.name)
    return found


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
