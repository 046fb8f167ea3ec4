"""A typed column becomes ``jsonb`` when its Mongo field's values stop fitting its type.

Documents of one collection need not agree on a field's type. A field that held ints when its
column was made (``integer``) may hold strings later: a batch of such documents carries it
typed (a string) and every row was refused, and a backfill of a collection whose ``_id``s are
ints and then strings stopped at the first string, for good. A batch holding both carries it
as extended JSON (``bson_type=json``); written into a ``text`` column, the string ``"a"``
arrived in quotes: a key no longer matched its row, so an update added a second row beside the
first and a delete missed it. Under ``on_schema_change: add`` such a column becomes ``jsonb``,
as the field's column would have been had its first batch held both types, and the values it
holds become the extended JSON of their BSON values, the text a typed batch's values become
for a ``jsonb`` column (:mod:`syncengine.runtime.jsonfields`), so rows keep matching by key.

When: a typed field whose BSON type belongs to another family than the column's type
(strings: text, uuid, timestamp or bytea columns; ObjectIds: text; numbers: number types;
booleans; dates: timestamps; UUIDs: uuid or text; binary: ``bytea``; documents: JSON; arrays:
array types of their items' family), or any field carried as JSON, is seen when the table is
ensured (:func:`wanted`), so the group is resolved (keys read, hashes compared) and written
against the ``jsonb`` column, and the shadow rebuilt first where a strategy compares with it.
A field carried as JSON gets ``jsonb`` whatever its values, as in a table its batch creates
(JSON numbers too: a long beyond 2^53 beside a double). A column type none of these families
names (a domain, an enum, ``citext``: the user's choice) is left as it is; so is every column
under ``on_schema_change: ignore`` or ``fail`` (a schema the user keeps: a Mongo string field
into a user's ``numeric`` column is parsed by the server, as before).

The BSON type of stored values is read from the column's type: ``bigint`` holds longs (an
int64 in int32 range is ``{"$numberLong": …}``), floats keep NaN and infinities as
``{"$numberDouble": …}``, and a ``text`` column whose every value is an ObjectId's 24 hex digits
holds ObjectIds (``{"$oid": …}``); other strings, numbers and booleans are their JSON values,
and dates and the rest their ``to_jsonb`` text (a value, not a key, in practice).
"""

from __future__ import annotations

import logging

import psycopg
import pyarrow as pa
from psycopg import sql

from syncengine.codecs.pg_widening import family
from syncengine.targets.base import TableSpec
from syncengine.targets.postgres import rebuild
from syncengine.targets.postgres.types import pg_type_of

log = logging.getLogger("syncengine.targets.postgres")

#: column types that hold JSON
JSON_TYPES = frozenset({"jsonb", "json"})

_FLOATS = frozenset({"double precision", "real"})
_OBJECT_ID = "^[0-9a-f]{24}$"


def _text(pg_type: str) -> bool:
    return family(pg_type) == "text"


def _numeric(pg_type: str) -> bool:
    return family(pg_type) == "number"


def _stamp(pg_type: str) -> bool:
    return (family(pg_type) or "").startswith("timestamp")


def _listed(pg_type: str) -> bool:
    return pg_type.endswith("[]")


#: the column types that take each BSON type's values as a typed batch writes them: their
#: own family's. Strings also go into a uuid, timestamp or bytea column (a type chosen for
#: strings that hold such values: the server parses them, or refuses one to the dead
#: letters), as UUIDs into text; reading such a column as text, as such a group's rows are
#: read back, always works. Not the reverse: an int group reads a text column's values as
#: ints (a strategy's reads, a shadow rebuild), so ints into text make it jsonb.
_HOLDS = {
    "string": lambda t: _text(t) or t in ("uuid", "bytea") or _stamp(t),
    "objectId": _text,
    "int": _numeric,
    "long": _numeric,
    "double": _numeric,
    "decimal": _numeric,
    "bool": lambda t: t == "boolean",
    "date": _stamp,
    "uuid": lambda t: t == "uuid" or _text(t),
    "binData": lambda t: t == "bytea",
    "object": lambda t: False,
    "array": _listed,
}


def _known(pg_type: str) -> bool:
    """Whether ``pg_type`` is one of the families above (else the user's own choice)."""
    return pg_type in JSON_TYPES or any(holds(pg_type) for holds in _HOLDS.values())


def wanted(field: pa.Field, current: str) -> bool:
    """Whether the column (of type ``current``) of Mongo field ``field`` becomes ``jsonb``
    when the table is ensured (see the module docstring)."""
    bson_type = (field.metadata or {}).get(b"bson_type")
    if bson_type is None or current in JSON_TYPES or not _known(current):
        return False
    kind = bson_type.decode()
    if kind == "json":
        return True
    if kind == "array" and _listed(current):
        return not _holds_items(field, current[: -len("[]")])
    holds = _HOLDS.get(kind)
    return holds is not None and not holds(current)


def _holds_items(field: pa.Field, element: str) -> bool:
    """Whether an array column of ``element``s holds the items of array field ``field``
    (``integer[]`` cannot hold strings): the column type the items would get
    (:func:`~.types.pg_type_of`; a mapped list keeps no item metadata) is ``element`` or of
    its family."""
    t = field.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t)):
        return True
    item = pg_type_of(t.value_field)
    return item == element or (family(item) or item) == family(element)


async def promote_fields(
    conn: psycopg.AsyncConnection,
    schema: str,
    table: str,
    spec: TableSpec,
    columns: dict[str, str],
    pipeline: str,
) -> bool:
    """Make ``jsonb`` every column of ``spec`` that :func:`wanted` says; whether one was.
    The shadow of the table is then marked as not kept current, so a strategy that compares
    with it rebuilds it from the target's rows before its next batch (its keys and hashes
    were made of the typed values: every older row would read as changed at the target)."""
    names = [f.name for f in spec.schema if f.name in columns and wanted(f, columns[f.name])]
    for name in names:
        await promote(conn, schema, table, name, columns[name])
    if names:
        from syncengine.conflicts.switch import KEPT_FENCE

        await rebuild.keep(conn, pipeline, spec.name, KEPT_FENCE, None, None)
    return bool(names)


async def promote(
    conn: psycopg.AsyncConnection, schema: str, table: str, column: str, current: str
) -> None:
    """Make ``column`` (of type ``current``) ``jsonb``, its values their extended JSON."""
    name = sql.Identifier(column)
    using: sql.Composable = sql.SQL("to_jsonb({})").format(name)
    if current == "bigint":
        using = sql.SQL(
            "CASE WHEN {c} BETWEEN -2147483648 AND 2147483647 "
            "THEN jsonb_build_object('$numberLong', {c}::text) ELSE to_jsonb({c}) END"
        ).format(c=name)
    elif current in _FLOATS:
        using = sql.SQL(
            "CASE WHEN {c} IN ('NaN', 'Infinity', '-Infinity') "
            "THEN jsonb_build_object('$numberDouble', {c}::text) ELSE to_jsonb({c}) END"
        ).format(c=name)
    elif current == "text" and await _object_ids(conn, schema, table, name):
        using = sql.SQL("jsonb_build_object('$oid', {})").format(name)
    log.warning(
        "%s.%s: the field's values now differ in type across documents; the column "
        "becomes jsonb (was %s), its values extended JSON",
        table, column, current,
    )  # fmt: skip
    await conn.execute(
        sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE jsonb USING {}").format(
            sql.Identifier(schema, table), name, using
        )
    )


async def _object_ids(
    conn: psycopg.AsyncConnection, schema: str, table: str, name: sql.Identifier
) -> bool:
    """Whether the column holds values and every one is an ObjectId's hex."""
    cur = await conn.execute(
        sql.SQL("SELECT bool_and({c} ~ %s) FROM {t} WHERE {c} IS NOT NULL").format(
            c=name, t=sql.Identifier(schema, table)
        ),
        (_OBJECT_ID,),
    )
    row = await cur.fetchone()
    return bool(row and row[0])
