"""Labels an enum gains while the stream runs.

The reader sends each user-defined column type's definition with the batches
(``pg_typedefs``, read when the stream starts) so that a Postgres target can create the type
and, whenever it ensures the table, give the enum the labels it lacks. ``ALTER TYPE … ADD
VALUE`` while a daemon runs sends nothing down the stream (no Relation or Type message
follows), so a row using the new label would reach the target with a definition that lacks
it and be refused, to the dead letters. So each batch's enum columns are checked against
the labels their definition lists (vectorized, one ``is_in`` per enum column); a value
outside them makes the reader read the type's definition again (one catalog query) and put
it on this batch and every later one of the table. The new definition changes the batch's
declared schema, which has the pipeline ensure the table again before it is written.
"""

from __future__ import annotations

import json

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from syncengine.changes import ChangeBatch, is_data_column
from syncengine.names import QualifiedName
from syncengine.sources.postgres import usertypes

TYPEDEFS = b"pg_typedefs"

_COLUMN_TYPE = (
    "SELECT CASE WHEN t.typcategory = 'A' THEN t.typelem ELSE t.oid END FROM pg_attribute a "
    "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_type t ON t.oid = a.atttypid "
    "WHERE n.nspname = %s AND c.relname = %s AND a.attname = %s AND NOT a.attisdropped"
)


def _labels(field: pa.Field) -> set[str] | None:
    """The labels of ``field``'s enum (or array of enum) type; None for other columns."""
    raw = (field.metadata or {}).get(TYPEDEFS)
    if not raw:
        return None
    own = json.loads(raw)[-1]
    return set(own["labels"]) if own.get("kind") == "enum" else None


def _outside(column: pa.ChunkedArray, labels: set[str]) -> bool:
    """Whether ``column`` (strings, or lists of them) holds a value not in ``labels``."""
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        column = pc.list_flatten(column)
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        return False
    known = pc.is_in(column, value_set=pa.array(sorted(labels), column.type))
    return not pc.all(pc.fill_null(known, True)).as_py()


class EnumLabels:
    """Refreshes the definition of an enum column whose batch holds a label it lacks."""

    def __init__(self) -> None:
        #: table → column → its definition read again (replaces the batches')
        self._fresh: dict[str, dict[str, bytes]] = {}

    async def check(self, conn: psycopg.AsyncConnection, batch: ChangeBatch) -> ChangeBatch:
        """``batch`` with every enum column's definition up to date."""
        fresh = self._fresh.get(batch.table, {})
        stale: list[str] = []
        for field in batch.data.schema:
            if not is_data_column(field.name):
                continue
            if field.name in fresh:
                field = field.with_metadata({**(field.metadata or {}), TYPEDEFS: fresh[field.name]})
            labels = _labels(field)
            if labels is not None and _outside(batch.data.column(field.name), labels):
                stale.append(field.name)
        for column in stale:
            definition = await _read(conn, batch.table, column)
            if definition is not None:
                self._fresh.setdefault(batch.table, {})[column] = definition.encode()
        fresh = self._fresh.get(batch.table, {})
        return batch.marked({c: {TYPEDEFS: d} for c, d in fresh.items()}) if fresh else batch


async def _read(conn: psycopg.AsyncConnection, table: str, column: str) -> str | None:
    """The column's type definition as the source's catalog holds it now."""
    name = QualifiedName.parse(table)
    cur = await conn.execute(_COLUMN_TYPE, (name.schema, name.name, column))
    row = await cur.fetchone()
    if row is None:
        return None
    return (await usertypes.definitions(conn, [row[0]])).get(row[0])
