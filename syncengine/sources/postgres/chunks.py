"""Snapshot chunks: planning key ranges, and reading one range through COPY into Arrow.

Tables with a primary key are cut into key ranges ``(lower, upper]`` of about
``snapshot_chunk_rows`` rows (boundaries from one ordered index scan, or, for a big table with a
dense single integer key, from its min and max: see :func:`_plan_span`); tables without one into
``ctid`` block ranges (``[lower, upper)`` blocks, TID range scans). Bounds are stored in the
state store as JSON text so an interrupted snapshot can resume at the next chunk.

A chunk is read with ``COPY (SELECT …) TO STDOUT (FORMAT csv)`` and parsed by pyarrow's CSV
reader with every column as a string, then converted column-wise by :mod:`.columns` — the same
conversion as the stream, so snapshot and stream batches have identical Arrow types. Bounds go
into the query as literals (COPY takes no parameters) via ``psycopg.sql.Literal``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg import sql

from syncengine.changes import META_SCHEMA, ChangeBatch
from syncengine.names import QualifiedName
from syncengine.sources.postgres import deadline, usertypes
from syncengine.sources.postgres.columns import PgType, pg_type, to_arrow
from syncengine.sources.postgres.copyout import copy_out, copy_out_into
from syncengine.sources.postgres.pgerrors import map_error
from syncengine.state.base import Chunk


@dataclass(frozen=True)
class TableShape:
    name: str
    columns: tuple[str, ...]
    types: tuple[PgType, ...]
    key: tuple[str, ...]

    def stored(self) -> TableShape:
        """The shape without its generated columns: what a copy into a table that generates
        them too may send (a write naming one is refused)."""
        kept = [(c, t) for c, t in zip(self.columns, self.types, strict=True) if not t.generated]
        if len(kept) == len(self.columns):
            return self
        return replace(self, columns=tuple(c for c, _ in kept), types=tuple(t for _, t in kept))


async def table_shape(
    conn: psycopg.AsyncConnection, table: str, key: tuple[str, ...]
) -> TableShape:
    parsed = QualifiedName.parse(table)
    cur = await conn.execute(
        "SELECT a.attname, a.atttypid, a.atttypmod, format_type(a.atttypid, a.atttypmod), "
        "CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END "
        "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        (parsed.schema, parsed.name),
    )
    found = await cur.fetchall()
    defs = await usertypes.definitions(conn, {row[1] for row in found})
    types = tuple(
        replace(pg_type(oid, typmod, {oid: formatted}, defs.get(oid, "")), generated=expr or "")
        for _, oid, typmod, formatted, expr in found
    )
    return TableShape(table, tuple(r[0] for r in found), types, key)


def _key_sql(key: tuple[str, ...]) -> sql.Composable:
    return sql.SQL("({})").format(sql.SQL(", ").join(map(sql.Identifier, key)))


async def plan(
    conn: psycopg.AsyncConnection, shape: TableShape, chunk_rows: int, where: str | None
) -> list[Chunk]:
    """Chunks covering the whole table as ``conn``'s snapshot sees it (a server error as the
    engine's: a cancelled scan is retried, not a traceback)."""
    try:
        return await _plan(conn, shape, chunk_rows, where)
    except psycopg.Error as exc:
        raise map_error(exc, f"planning the snapshot chunks of {shape.name}") from exc


async def _plan(
    conn: psycopg.AsyncConnection, shape: TableShape, chunk_rows: int, where: str | None
) -> list[Chunk]:
    if not shape.key:
        return await _plan_blocks(conn, shape, chunk_rows)
    if where is None:
        spanned = await _plan_span(conn, shape, chunk_rows)
        if spanned is not None:
            return spanned
    key = sql.SQL(", ").join(map(sql.Identifier, shape.key))
    texts = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k)) for k in shape.key)
    query = sql.SQL(
        "SELECT {texts} FROM (SELECT {key}, row_number() OVER (ORDER BY {key}) AS rn "
        "FROM {table} {where}) s WHERE rn % {n} = 0 ORDER BY rn"
    ).format(
        texts=texts,
        key=key,
        table=QualifiedName.parse(shape.name).identifier(),
        where=sql.SQL("WHERE " + where) if where else sql.SQL(""),
        n=sql.Literal(chunk_rows),
    )
    cur = await deadline.patient(conn.cursor()).execute(query)  # one scan of the whole key
    bounds = [json.dumps(list(row)) for row in await cur.fetchall()]
    edges: list[str | None] = [None, *bounds, None]
    return [Chunk(shape.name, i, edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


#: integer key types whose ranges can be cut by arithmetic (int2, int4, int8)
_INTEGER_KEYS = frozenset({20, 21, 23})
#: below this many rows (the catalog's estimate) the ordered scan costs next to nothing
SPAN_PLAN_MIN_ROWS = 100_000
#: the key range may be at most this many times the row estimate (half of it empty)
SPAN_PLAN_MAX_SPARSENESS = 2


async def _plan_span(
    conn: psycopg.AsyncConnection, shape: TableShape, chunk_rows: int
) -> list[Chunk] | None:
    """Chunks of ``chunk_rows`` consecutive key values between the key's min and max (two
    index probes), or None where the ordered scan must plan: not a single integer key, a
    small table, no row estimate, or a sparse key (range > 2 × the estimate: mostly empty
    chunks). The scan reads every key (0.3 s for 1M rows on an idle 2-core machine, 1 s on
    a busy one), before any row is copied; a unique integer key holds at most ``chunk_rows``
    rows in ``chunk_rows`` consecutive values, so these chunks are never bigger than the
    scan's, and at most twice as many."""
    if len(shape.key) != 1:
        return None
    column = shape.columns.index(shape.key[0])
    if shape.types[column].oid not in _INTEGER_KEYS:
        return None
    name = QualifiedName.parse(shape.name)
    found = await (
        await conn.execute(
            "SELECT c.reltuples::bigint FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (name.schema, name.name),
        )
    ).fetchone()
    estimate = int(found[0]) if found is not None else -1  # -1: never analysed
    if estimate < SPAN_PLAN_MIN_ROWS:
        return None
    key = sql.Identifier(shape.key[0])
    query = sql.SQL("SELECT min({k})::bigint, max({k})::bigint FROM {t}").format(
        k=key, t=name.identifier()
    )
    low, high = await (await conn.execute(query)).fetchone() or (None, None)
    if low is None or high is None:
        return None
    if high - low + 1 > SPAN_PLAN_MAX_SPARSENESS * estimate:
        return None
    bounds = [json.dumps([str(b)]) for b in range(low - 1 + chunk_rows, high, chunk_rows)]
    edges: list[str | None] = [None, *bounds, None]
    return [Chunk(shape.name, i, edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


async def _plan_blocks(
    conn: psycopg.AsyncConnection, shape: TableShape, chunk_rows: int
) -> list[Chunk]:
    name = QualifiedName.parse(shape.name)
    row = await (
        await conn.execute(
            "SELECT pg_relation_size(c.oid) / current_setting('block_size')::int, "
            "greatest(c.reltuples, 0)::bigint, c.relpages FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (name.schema, name.name),
        )
    ).fetchone()
    assert row is not None
    blocks, tuples, pages = row
    per_block = max(1, int(tuples // pages)) if pages else 100
    step = max(1, chunk_rows // per_block)
    starts = list(range(0, max(int(blocks), 1), step))
    edges: list[int | None] = [*starts, None]
    return [
        Chunk(
            shape.name,
            i,
            json.dumps({"block": edges[i]}),
            json.dumps({"block": edges[i + 1]}) if edges[i + 1] is not None else None,
        )
        for i in range(len(starts))
    ]


def chunk_query(
    shape: TableShape, chunk: Chunk, where: str | None, fmt: str = "csv"
) -> sql.Composed:
    """``COPY (SELECT … WHERE <range> [AND <where>]) TO STDOUT (FORMAT <fmt>)``: ``csv`` to
    decode, ``binary`` to pass through (:mod:`.passthrough`)."""
    conditions: list[sql.Composable] = []
    if shape.key:
        key = _key_sql(shape.key)
        for bound, op in ((chunk.lower, ">"), (chunk.upper, "<=")):
            if bound is not None:
                values = sql.SQL(", ").join(map(sql.Literal, json.loads(bound)))
                conditions.append(sql.SQL("{} {} ({})").format(key, sql.SQL(op), values))
    else:
        for bound, op in ((chunk.lower, ">="), (chunk.upper, "<")):
            if bound is not None:
                tid = f"({int(json.loads(bound)['block'])},0)"
                conditions.append(sql.SQL("ctid {} {}::tid").format(sql.SQL(op), sql.Literal(tid)))
    if where:
        conditions.append(sql.SQL("(" + where + ")"))
    condition = sql.SQL(" AND ").join(conditions) if conditions else sql.SQL("true")
    return sql.SQL("COPY (SELECT {} FROM {} WHERE {}) TO STDOUT (FORMAT {})").format(
        sql.SQL(", ").join(map(sql.Identifier, shape.columns)),
        QualifiedName.parse(shape.name).identifier(),
        condition,
        sql.SQL({"csv": "csv", "binary": "binary"}[fmt]),
    )


async def read_copy(conn: psycopg.AsyncConnection, query: sql.Composed) -> bytes:
    """All data of a ``COPY … TO STDOUT``, bounded by progress (data must keep arriving)."""
    async with deadline.progress(conn, "reading rows (COPY)") as alive:
        return await copy_out(conn, query, alive)


async def stream_copy(
    conn: psycopg.AsyncConnection,
    query: sql.Composed,
    columns: tuple[str, ...],
    rows: int,
    take: Callable[[pa.Table], Awaitable[None]],
) -> int:
    """The rows of a CSV ``COPY … TO STDOUT`` as text tables of ``rows`` rows each (the last
    may be shorter; at least one, maybe empty), each handed to ``take`` before the next is
    read: memory holds one piece, not the whole result, and while ``take`` waits (on a
    consumer) the server waits too and the progress deadline is off. Returns the rows read."""
    async with deadline.progress(conn, "reading rows (COPY)") as alive:

        async def parsed(data: bytes) -> None:
            await alive.waiting(take(csv_to_text_columns(data, columns)))

        count = await copy_out_into(conn, query, alive, parsed, piece_bytes=None, piece_rows=rows)
    if count == 0:
        await take(csv_to_text_columns(b"", columns))
    return count


def csv_to_text_columns(
    data: bytes, columns: tuple[str, ...], use_threads: bool = True
) -> pa.Table:
    """Postgres CSV → a table of string columns (unquoted empty = NULL, ``""`` = empty).
    ``use_threads``: Arrow's pool may parse on every core (not beside a running stream)."""
    if not data:
        return pa.table({c: pa.array([], pa.string()) for c in columns})
    return pacsv.read_csv(
        pa.BufferReader(data),
        read_options=pacsv.ReadOptions(
            column_names=list(columns), block_size=1 << 24, use_threads=use_threads
        ),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types={c: pa.string() for c in columns},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )


def read_batch(
    shape: TableShape, text: pa.Table, position: str | pa.Array, meta: dict[str, Any]
) -> ChangeBatch:
    """Text columns → a ChangeBatch of ``r`` rows at ``position`` (one for all rows, or one
    per row), typed like the stream."""
    n = text.num_rows
    arrays = [
        to_arrow(text.column(c).combine_chunks(), t, c)
        for c, t in zip(shape.columns, shape.types, strict=True)
    ]
    fields = [
        t.field(c, a.type) for c, t, a in zip(shape.columns, shape.types, arrays, strict=True)
    ]
    fields.extend(META_SCHEMA)
    arrays.extend(
        [
            pa.array(["r"] * n, pa.string()),
            pa.array([position] * n, pa.string()) if isinstance(position, str) else position,
            pa.nulls(n, pa.timestamp("us", tz="UTC")),
            pa.nulls(n, pa.int64()),
        ]
    )
    data = pa.Table.from_arrays(arrays, schema=pa.schema(fields))
    return ChangeBatch(shape.name, data, shape.key, meta)


def truncate_batch(shape: TableShape, position: str, meta: dict[str, Any]) -> ChangeBatch:
    """One ``t`` row at ``position``: a keyless table's snapshot starts by emptying the
    target table (its rows have no key to upsert by)."""
    empty = pa.table({c: pa.array([None], pa.string()) for c in shape.columns})
    batch = read_batch(shape, empty, position, meta)
    ops = pa.array(["t"], pa.string())
    return batch.replace(
        batch.data.set_column(batch.data.schema.get_field_index("_op"), "_op", ops)
    )


def key_texts(text: pa.Table, key: tuple[str, ...]) -> list[tuple[str | None, ...]]:
    """The key of each row in text form (to match against pgoutput's text key values)."""
    columns = [text.column(k).to_pylist() for k in key]
    return list(zip(*columns, strict=True)) if columns else []
