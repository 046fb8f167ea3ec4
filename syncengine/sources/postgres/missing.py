"""The value a column added with a default holds in rows the stream never sends again.

``ALTER TABLE … ADD COLUMN d int DEFAULT 5`` does not rewrite the table (Postgres 11+): the
rows that existed read ``d = 5`` through the column's *missing value*
(``pg_attribute.attmissingval``), and nothing about them reaches the WAL. A target that adds
the column when the stream first shows it would hold NULL in every one of those rows, without
a word, until each is updated. So the reader looks up the missing values of a table's columns
the first time a batch of the table arrives and whenever its columns change (one catalog query
each time), and each field with one carries it as ``pg_missing`` metadata, in the type's text
form; the Postgres target adds such a column with that value as its default, so the rows it
already holds (the ones that existed at the source when the column was added) get it too.

A volatile default (``clock_timestamp()``, ``gen_random_uuid()``) rewrites the table instead:
each existing row got its own value and none of them is in the WAL. A column with a default but
no missing value is marked ``pg_default_only``, and a target that adds it to a table holding
rows says so in a warning (resnapshot the table); it may also be a column whose default was set
after it was added, whose old rows hold NULL, as the target's do.

The missing value is read when the reader meets the column, not when it was added: a table
rewritten since (``VACUUM FULL``, a type change) holds the value in every row and has none, so
its column is marked ``pg_default_only`` as above.
"""

from __future__ import annotations

import psycopg

from syncengine.changes import ChangeBatch, is_data_column
from syncengine.names import QualifiedName

#: field metadata: the column's missing value in its type's text form
MISSING = b"pg_missing"
#: field metadata: the column has a default but no missing value
DEFAULT_ONLY = b"pg_default_only"

_QUERY = (
    "SELECT a.attname, a.atthasmissing AND t.typdelim = ',', "
    "CASE WHEN a.atthasmissing AND t.typdelim = ',' "
    "THEN (a.attmissingval::text::text[])[1] END, d.adbin IS NOT NULL "
    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid "
    "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
    "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
    "AND a.attgenerated = '' AND a.attname = ANY(%s)"
)


class MissingValues:
    """Puts each column's missing value on the batches of its table (``pg_missing``)."""

    def __init__(self) -> None:
        #: (table, data columns) → column → the metadata its fields get, for each shape met
        self._marks: dict[tuple[str, tuple[str, ...]], dict[str, dict[bytes, bytes]]] = {}

    async def annotate(self, conn: psycopg.AsyncConnection, batch: ChangeBatch) -> ChangeBatch:
        """``batch`` with the fields of columns added with a default marked."""
        names = tuple(n for n in batch.data.column_names if is_data_column(n))
        shape = (batch.table, names)
        marks = self._marks.get(shape)
        if marks is None:
            marks = await _read(conn, batch.table, names)
            self._marks[shape] = marks
        return batch.marked(marks) if marks else batch


async def _read(
    conn: psycopg.AsyncConnection, table: str, names: tuple[str, ...]
) -> dict[str, dict[bytes, bytes]]:
    name = QualifiedName.parse(table)
    cur = await conn.execute(_QUERY, (name.schema, name.name, list(names)))
    marks: dict[str, dict[bytes, bytes]] = {}
    for column, has_missing, value, has_default in await cur.fetchall():
        if has_missing and value is not None:
            marks[column] = {MISSING: value.encode()}
        elif has_default:
            marks[column] = {DEFAULT_ONLY: b"1"}
    return marks
