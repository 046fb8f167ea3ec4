"""One batched read of the current target rows for a set of keys (conflict detection)."""

from __future__ import annotations

import psycopg
import pyarrow as pa
from psycopg import sql

from syncengine.targets.base import TableSpec

_TEXTUAL = ("text", "character varying", "character")


def _select_item(field: pa.Field, pg_type: str) -> sql.Composable:
    """Read a column so the driver's value fits the spec's Arrow type."""
    ident = sql.SQL("t.{}").format(sql.Identifier(field.name))
    t = field.type
    if (pa.types.is_string(t) or pa.types.is_large_string(t)) and not pg_type.startswith(_TEXTUAL):
        return sql.SQL("{}::text").format(ident)  # uuid, json, enums … as their text
    if pa.types.is_floating(t) and pg_type not in ("real", "double precision"):
        return sql.SQL("{}::double precision").format(ident)
    return ident


async def read_rows(
    conn: psycopg.AsyncConnection,
    schema: str,
    spec: TableSpec,
    keys: pa.Table,
    target_columns: dict[str, str],
) -> pa.Table:
    fields = [f for f in spec.schema if f.name in target_columns]
    out_schema = pa.schema(fields)
    if not keys.num_rows:
        return out_schema.empty_table()
    key = list(spec.key)
    # Keys travel as text arrays and are cast to the column types on the server: one
    # parameterized statement whatever the key types, one round trip.
    unnest = sql.SQL(", ").join(sql.SQL("%s::text[]") for _ in key)
    casts = sql.SQL(", ").join(
        sql.SQL("u.{}::{}").format(sql.Identifier(f"k{i}"), sql.SQL(target_columns[k]))  # type: ignore[arg-type]  # catalog type
        for i, k in enumerate(key)
    )
    aliases = sql.SQL(", ").join(sql.Identifier(f"k{i}") for i in range(len(key)))
    query = sql.SQL(
        "SELECT {} FROM {} AS t WHERE ({}) IN (SELECT {} FROM unnest({}) AS u({}))"
    ).format(
        sql.SQL(", ").join(_select_item(f, target_columns[f.name]) for f in fields),
        sql.Identifier(schema, spec.name),
        sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(k)) for k in key),
        casts,
        unnest,
        aliases,
    )
    params = [keys.column(k).cast(pa.string()).to_pylist() for k in key]
    cur = await conn.execute(query, params)
    rows = await cur.fetchall()
    if not rows:
        return out_schema.empty_table()
    columns = list(zip(*rows, strict=True))
    arrays = [pa.array(list(col), type=f.type) for col, f in zip(columns, fields, strict=True)]
    return pa.Table.from_arrays(arrays, schema=out_schema)
