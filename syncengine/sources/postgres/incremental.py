"""``mode: incremental``: poll a cursor column instead of reading a slot.

Each table is read in ``(cursor, key)`` order from just after the last ``(cursor, key)`` seen,
``max_rows`` at a time, so rows sharing a cursor value (a timestamp set by one statement) are
never skipped or repeated, whatever the page size. Rows arrive as ``u`` changes carrying the
whole row (apply creates or overwrites it).

What this mode cannot see, by construction (documented in docs/postgres-source.md):

* deletes (a deleted row is simply no longer returned);
* rows whose cursor is NULL;
* a row whose cursor value is older than one already read when it becomes visible (a long
  transaction that set ``updated_at = now()`` early and committed late). Use a cursor that
  is assigned close to commit, or accept the gap.

The position is JSON, ``{"tables": {"schema.table": [cursor_text, [key_text, …]]}}``, built
from the values' Postgres text forms; they go back into the query as literals, which Postgres
coerces to the column types. Polling happens every ``max(batch.max_wait, 1s)`` when idle.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import psycopg
import pyarrow as pa
from psycopg import sql

from syncengine.changes import ChangeBatch
from syncengine.names import QualifiedName
from syncengine.sources.postgres import admin
from syncengine.sources.postgres.chunks import (
    TableShape,
    csv_to_text_columns,
    read_batch,
    read_copy,
    table_shape,
)
from syncengine.sources.postgres.pgerrors import map_error

if TYPE_CHECKING:
    from syncengine.sources.postgres.context import SourceContext

Mark = tuple[str, list[str]]


def encode(marks: dict[str, Mark]) -> str:
    return json.dumps({"tables": {t: [c, k] for t, (c, k) in sorted(marks.items())}})


def decode(position: str | None) -> dict[str, Mark]:
    if not position:
        return {}
    tables: dict[str, Any] = json.loads(position).get("tables", {})
    return {t: (v[0], list(v[1])) for t, v in tables.items()}


def _order(shape: TableShape, cursor: str) -> sql.Composable:
    return sql.SQL("({})").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in (cursor, *shape.key))
    )


def _literal(mark: Mark) -> sql.Composable:
    cursor, key = mark
    return sql.SQL("({})").format(sql.SQL(", ").join(map(sql.Literal, [cursor, *key])))


def poll_query(
    shape: TableShape, cursor: str, after: Mark | None, upto: Mark | None, limit: int
) -> sql.Composed:
    order = _order(shape, cursor)
    conditions: list[sql.Composable] = [sql.SQL("{} IS NOT NULL").format(sql.Identifier(cursor))]
    if after is not None:
        conditions.append(sql.SQL("{} > {}").format(order, _literal(after)))
    if upto is not None:
        conditions.append(sql.SQL("{} <= {}").format(order, _literal(upto)))
    return sql.SQL(
        "COPY (SELECT {cols} FROM {table} WHERE {cond} ORDER BY {order_cols} LIMIT {n}) "
        "TO STDOUT (FORMAT csv)"
    ).format(
        cols=sql.SQL(", ").join(map(sql.Identifier, shape.columns)),
        table=QualifiedName.parse(shape.name).identifier(),
        cond=sql.SQL(" AND ").join(conditions),
        order_cols=sql.SQL(", ").join(sql.Identifier(c) for c in (cursor, *shape.key)),
        n=sql.Literal(limit),
    )


async def _shapes(source: SourceContext, conn: psycopg.AsyncConnection) -> list[TableShape]:
    keys = await admin.table_keys(conn, source.tables_)
    shapes = []
    for table in source.tables_:
        shape = await table_shape(conn, table, keys.get(table, ()))
        if not shape.key:
            shape = TableShape(shape.name, shape.columns, shape.types, shape.columns)
        shapes.append(shape)
    return shapes


async def current_position(source: SourceContext) -> str:
    """The largest ``(cursor, key)`` of every table now."""
    cursor = source.config.cursor
    assert cursor is not None
    conn = await source.catalog()
    marks: dict[str, Mark] = {}
    for shape in await _shapes(source, conn):
        texts = sql.SQL(", ").join(
            sql.SQL("{}::text AS {}").format(sql.Identifier(c), sql.Identifier(f"_t{i}"))
            for i, c in enumerate((cursor, *shape.key))
        )  # aliased: ORDER BY must see the columns, not their text forms
        desc = sql.SQL(", ").join(
            sql.SQL("{} DESC").format(sql.Identifier(c)) for c in (cursor, *shape.key)
        )
        row = await (
            await conn.execute(
                sql.SQL("SELECT {} FROM {} WHERE {} IS NOT NULL ORDER BY {} LIMIT 1").format(
                    texts,
                    QualifiedName.parse(shape.name).identifier(),
                    sql.Identifier(cursor),
                    desc,
                )
            )
        ).fetchone()
        if row is not None:
            marks[shape.name] = (row[0], list(row[1:]))
    return encode(marks)


async def poll(
    source: SourceContext, start: str | None, until: str | None
) -> AsyncIterator[ChangeBatch]:
    """Changes after ``start`` (all rows when None); stops once ``until`` is reached."""
    cursor = source.config.cursor
    assert cursor is not None
    marks = decode(start)
    limits = decode(until) if until is not None else None
    conn = await source.connect()
    try:
        shapes = await _shapes(source, conn)
        while True:
            found = False
            for shape in shapes:
                upto = limits.get(shape.name) if limits is not None else None
                if limits is not None and upto is None:
                    continue  # the table was empty at ``until``
                query = poll_query(
                    shape, cursor, marks.get(shape.name), upto, source.batch.max_rows
                )
                text = csv_to_text_columns(await read_copy(conn, query), shape.columns)
                if not text.num_rows:
                    continue
                found = True
                marks[shape.name] = _last_mark(text, cursor, shape.key)
                position = encode(marks)
                batch = read_batch(shape, text, position, {"resume": position})
                ops = pa.array(["u"] * batch.num_rows, pa.string())
                data = batch.data.set_column(batch.data.schema.get_field_index("_op"), "_op", ops)
                yield batch.replace(data)
            if not found:
                if limits is not None:
                    return
                await asyncio.sleep(max(source.batch.max_wait, 1.0))
    except psycopg.Error as exc:
        raise map_error(exc, "polling for changes") from exc
    finally:
        await conn.close()


def _last_mark(text: pa.Table, cursor: str, key: tuple[str, ...]) -> Mark:
    last = text.num_rows - 1
    return (text.column(cursor)[last].as_py(), [text.column(k)[last].as_py() for k in key])
