"""How a target table follows its source's schema (under ``on_schema_change: add``): the
table created with its generated columns, columns added with the value the source's older
rows hold, and columns widened where they cannot hold what the source now sends exactly.
"""

from __future__ import annotations

import logging

import psycopg
import pyarrow as pa
from psycopg import sql

from syncengine.codecs import pg_widening
from syncengine.targets.base import TableSpec
from syncengine.targets.postgres import ddl, exact
from syncengine.targets.postgres.types import type_sql

log = logging.getLogger("syncengine.targets.postgres")


async def create_table(
    conn: psycopg.AsyncConnection,
    schema: str,
    spec: TableSpec,
    types: dict[str, sql.Composable],
    later: bool,
) -> None:
    """Create the table; the columns generated at the source generated here too (the
    stream never carries their values before Postgres 18), or, when an expression cannot
    be created here (a function the target lacks, a column a mapping renamed), plain
    columns, with a warning: nothing writes them (``runtime/declared.py``)."""
    if any(b"pg_generated" in (f.metadata or {}) for f in spec.schema):
        try:
            async with conn.transaction():  # a savepoint: a refused expression
                await conn.execute(ddl.create_table_sql(schema, spec, types, not later))
            return
        except psycopg.Error as exc:
            log.warning(
                "%s: its generated columns cannot be created here (%s); they are plain "
                "columns, which nothing writes",
                spec.name, str(exc).splitlines()[0],
            )  # fmt: skip
    await conn.execute(ddl.create_table_sql(schema, spec, types, not later, generated=False))


async def add_column(
    conn: psycopg.AsyncConnection,
    schema: str,
    table: str,
    field: pa.Field,
    type_: sql.Composable | None,
) -> None:
    """Add ``field``'s column; with the value the source's rows that existed before the
    column hold (``pg_missing``: :mod:`syncengine.sources.postgres.missing`) as its
    default, so the rows already here get it. The default stays: a row of the group
    read before the column was added and inserted after it existed at the source then
    too, and has the value there. A column generated at the source is generated here
    (see :func:`create_table`)."""
    meta = field.metadata or {}
    value = meta.get(b"pg_missing")
    if meta.get(b"pg_default_only") and await ddl.holds_rows(conn, schema, table):
        log.warning(
            "%s.%s: the source's column has a default but no value stored for the rows "
            "that existed before it: if it was added with a volatile default (a table "
            "rewrite), those rows hold values the stream does not carry, and NULL here; "
            "resnapshot the table to copy them",
            table, field.name,
        )  # fmt: skip
    generated = meta.get(b"pg_generated")
    if value is not None or generated:
        default = None if value is None else value.decode()
        try:
            async with conn.transaction():  # a savepoint: a refusal costs only this
                await conn.execute(ddl.add_column_sql(schema, table, field, type_, default))
            return
        except psycopg.Error as exc:
            what = (
                "its generation expression (nothing writes it)"
                if generated
                else f"the value the source's older rows hold ({default!r}; NULL here)"
            )
            log.warning(
                "%s.%s: added as a plain column; the target refused %s: %s",
                table, field.name, what, str(exc).splitlines()[0],
            )  # fmt: skip
    await conn.execute(ddl.add_column_sql(schema, table, field, type_, generated=False))


async def widen(
    conn: psycopg.AsyncConnection,
    schema: str,
    table: str,
    spec: TableSpec,
    columns: dict[str, str],
) -> bool:
    """Columns that cannot hold what the source now sends exactly become a type that holds
    both their values and the source's.

    * A column whose source declares its type (``pg_type``: a Postgres source) and which
      cannot hold that type's values becomes the narrowest type that holds both
      (:mod:`syncengine.codecs.pg_widening`): a source's ``ALTER COLUMN … TYPE`` would
      otherwise have its new values rounded (``numeric(10,2)`` sent 1.2345) or refused.
    * An integer column whose schemaless source (Mongo) now sends fractions becomes
      double precision, or numeric when it holds an integer a double cannot
      (:mod:`.exact`): ``amount`` sent as an int in the batch that created the table and
      as a double later would store 0.01 as 0.
    """
    changed = False
    for field in spec.schema:
        current = columns.get(field.name)
        if current is None:
            continue
        declared = (field.metadata or {}).get(b"pg_type")
        wider = None if declared is None else pg_widening.wider(current, declared.decode())
        if wider is not None:
            type_sql(wider)  # a name the source declared: refused unless it is a type name
            log.warning(
                "%s.%s: the source's column is %s, which %s cannot hold exactly; "
                "the column becomes %s",
                spec.name, field.name, (declared or b"").decode(), current, wider,
            )  # fmt: skip
        elif current not in exact.INTEGER_TYPES or field.name in spec.key:
            continue
        elif pa.types.is_floating(field.type):
            wider = await exact.type_for_fractions(conn, schema, table, field.name, current)
        elif pa.types.is_decimal(field.type):
            wider = "numeric"
        else:
            continue
        await exact.alter_type(conn, schema, table, field.name, wider)
        changed = True
    return changed
