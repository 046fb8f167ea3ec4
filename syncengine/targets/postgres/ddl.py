"""Target tables and the ``_syncengine`` state schema: create, introspect, grow.

State tables come from :data:`syncengine.state.schema.TABLES`, the one description every
backend shares, so the Postgres target stores exactly what the SQLite store does.
"""

from __future__ import annotations

import psycopg
import pyarrow as pa
from psycopg import sql

from syncengine.errors import FatalError
from syncengine.state.schema import FORMAT_VERSION, INDEXES, MIGRATIONS, TABLES
from syncengine.targets.base import TableSpec
from syncengine.targets.postgres.types import pg_type_of, type_sql

STATE_SCHEMA = "_syncengine"


def state_table(name: str) -> sql.Composable:
    return sql.Identifier(STATE_SCHEMA, name)


async def ensure_state_schema(conn: psycopg.AsyncConnection) -> None:
    """Create ``_syncengine`` and its tables if missing; refuse a newer format."""
    async with conn.transaction():
        # Concurrent first starts must not race on CREATE SCHEMA / CREATE TABLE.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('syncengine.state_schema'))")
        await conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(STATE_SCHEMA))
        )
        for table, (columns, key) in TABLES.items():
            body = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind))
                for name, kind in columns
            )
            pk = sql.SQL(", ").join(map(sql.Identifier, key))
            await conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))").format(
                    state_table(table), body, pk
                )
            )
        cur = await conn.execute(
            sql.SQL("SELECT value FROM {} WHERE name = 'format_version'").format(
                state_table("meta")
            )
        )
        row = await cur.fetchone()
        version = int(row[0]) if row else FORMAT_VERSION
        if version > FORMAT_VERSION:
            raise FatalError(
                f"target state schema {STATE_SCHEMA} has format {version}, newer than this "
                f"syncengine understands ({FORMAT_VERSION})",
                hint="upgrade syncengine",
            )
        for step in range(version + 1, FORMAT_VERSION + 1):
            for table, column, kind in MIGRATIONS.get(step, []):
                await conn.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                        state_table(table),
                        sql.Identifier(column),
                        sql.SQL(kind),
                    )
                )
        for name, (table, indexed, where) in INDEXES.items():
            indexed_columns = indexed.split(", ")
            if _POSITION in indexed_columns:
                # positions compare COLLATE "C" (see state.purge_tombstones): an index in the
                # database's collation serves no such range, so a bytewise one replaces it
                await conn.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(state_table(name)))
                name += "_c"
            await conn.execute(
                sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({}) WHERE {}").format(
                    sql.Identifier(name),
                    state_table(table),
                    sql.SQL(", ").join([_index_column(column) for column in indexed_columns]),
                    sql.SQL(where),
                )
            )
        await conn.execute(
            sql.SQL(
                "INSERT INTO {} (name, value) VALUES ('format_version', %s) "
                "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
            ).format(state_table("meta")),
            (str(FORMAT_VERSION),),
        )


#: the state column holding source positions, indexed bytewise
_POSITION = "position"


def _index_column(column: str) -> sql.Composable:
    if column == _POSITION:
        return sql.SQL('{} COLLATE "C"').format(sql.Identifier(column))
    return sql.Identifier(column)


async def existing_columns(
    conn: psycopg.AsyncConnection, schema: str, table: str
) -> dict[str, str] | None:
    """column → formatted type of an existing table, in column order; None when absent."""
    cur = await conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        (schema, table),
    )
    rows = await cur.fetchall()
    if not rows:
        exists = await conn.execute(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (schema, table),
        )
        return {} if await exists.fetchone() else None
    return {name: kind for name, kind in rows}


async def column_type_ids(
    conn: psycopg.AsyncConnection, schema: str, table: str, names: list[str]
) -> dict[str, tuple[int, int]]:
    """column → (type oid, typmod) of ``names`` in an existing table."""
    cur = await conn.execute(
        "SELECT a.attname, a.atttypid::int, a.atttypmod FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attname = ANY(%s) AND a.attnum > 0 "
        "AND NOT a.attisdropped",
        (schema, table, names),
    )
    return {name: (oid, typmod) for name, oid, typmod in await cur.fetchall()}


async def holds_rows(conn: psycopg.AsyncConnection, schema: str, table: str) -> bool:
    """Whether the table holds a row (one page read at most)."""
    cur = await conn.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(schema, table))
    )
    row = await cur.fetchone()
    return bool(row and row[0])


async def has_unique_key(
    conn: psycopg.AsyncConnection, schema: str, table: str, key: tuple[str, ...]
) -> bool:
    """Whether a primary key or unique index covers exactly ``key`` (ON CONFLICT needs one)."""
    cur = await conn.execute(
        "SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey) "
        "WHERE n.nspname = %s AND c.relname = %s AND i.indisunique AND i.indpred IS NULL "
        "GROUP BY i.indexrelid",
        (schema, table),
    )
    wanted = sorted(key)
    return any(sorted(row[0]) == wanted for row in await cur.fetchall())


def generated_sql(field: pa.Field) -> sql.Composable:
    """`` GENERATED ALWAYS AS (…) STORED`` for a column generated at the source
    (``pg_generated``: the expression as the source's catalog prints it, trusted as its type
    definitions are), else nothing."""
    expression = (field.metadata or {}).get(b"pg_generated")
    if not expression:
        return sql.SQL("")
    return sql.SQL(" GENERATED ALWAYS AS ({}) STORED").format(sql.SQL(expression.decode()))


def create_table_sql(
    schema: str,
    spec: TableSpec,
    types: dict[str, sql.Composable] | None = None,
    key_index: bool = True,
    generated: bool = True,
) -> sql.Composed:
    """``types``: column types decided elsewhere (user-defined types, :mod:`.usertypes`).
    ``key_index=False``: the key columns stay NOT NULL but the primary key is added after
    the table's first load (:mod:`.keylater`). ``generated``: columns generated at the
    source are generated here too (:func:`generated_sql`)."""
    columns = []
    for field in spec.schema:
        not_null = sql.SQL(" NOT NULL") if field.name in spec.key else sql.SQL("")
        type_ = (types or {}).get(field.name) or type_sql(pg_type_of(field))
        how = generated_sql(field) if generated else sql.SQL("")
        columns.append(
            sql.SQL("{} {}{}{}").format(sql.Identifier(field.name), type_, not_null, how)
        )
    body = sql.SQL(", ").join(columns)
    if not spec.key or not key_index:  # keyless: no constraint the source does not have
        return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
            sql.Identifier(schema, spec.name), body
        )
    pk = sql.SQL(", ").join(map(sql.Identifier, spec.key))
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))").format(
        sql.Identifier(schema, spec.name), body, pk
    )


def add_column_sql(
    schema: str,
    table: str,
    field: pa.Field,
    type_: sql.Composable | None = None,
    default: str | None = None,
    generated: bool = True,
) -> sql.Composed:
    """``default``: a value in its type's text form, which the rows the table holds get
    (a constant default does not rewrite the table). ``generated``: see
    :func:`create_table_sql`."""
    add = sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}{}").format(
        sql.Identifier(schema, table),
        sql.Identifier(field.name),
        type_ or type_sql(pg_type_of(field)),
        generated_sql(field) if generated else sql.SQL(""),
    )
    if default is None:
        return add
    return sql.SQL("{} DEFAULT {}").format(add, sql.Literal(default))


async def generated_columns(
    conn: psycopg.AsyncConnection, schema: str, table: str
) -> frozenset[str]:
    """The table's generated columns: Postgres computes them, no write may name them."""
    cur = await conn.execute(
        "SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
        "AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated <> ''",
        (schema, table),
    )
    return frozenset(row[0] for row in await cur.fetchall())
