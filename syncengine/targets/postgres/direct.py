"""The bulk fast path: rows that only add keys the target lacks skip the staging table.

A backfill chunk, or a reload after a truncate, is nothing but new rows; for those one ``COPY``
straight into the table is all the work a plain load would do. The staged path (apply.py)
stays the general case and the fallback whenever this one is unsure or meets a bad row.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from syncengine.changes import OP_UPDATE
from syncengine.targets.base import TableWrite
from syncengine.targets.postgres.errors import is_record_error
from syncengine.targets.postgres.read import as_text, key_match, key_params
from syncengine.targets.postgres.staged import Staged
from syncengine.targets.postgres.types import to_copy_text


async def copy_directly(
    conn: psycopg.AsyncConnection,
    table: sql.Identifier,
    write: TableWrite,
    staged: Staged,
    target_columns: dict[str, str],
) -> bool:
    """The bulk case (a backfill, a reload after a truncate): rows that only insert keys the
    target does not have go straight in with one ``COPY``, without staging. One probe of the
    keys decides; any doubt (a delete, a partial update, a key present, a bad row) answers
    False and the staged path runs. A row updated at the source names a key the target has
    (compaction turns an insert and its updates into one insert), so a batch with an update
    is not probed: a stream's group of updates would pay a wasted round trip per table."""
    rows = staged.rows
    partial = pc.not_equal(rows.column("__pat"), 0)
    if pc.any(pc.or_(partial, pc.equal(rows.column("__op"), OP_UPDATE))).as_py():
        return False
    if not staged.truncate and await _any_key_present(
        conn, table, write.spec.key, staged.rows, target_columns
    ):
        return False
    return await copy_rows(conn, table, staged.rows, staged.columns, target_columns)


async def copy_rows(
    conn: psycopg.AsyncConnection,
    table: sql.Identifier,
    rows: pa.Table,
    columns: list[str],
    target_columns: dict[str, str],
) -> bool:
    """``COPY`` ``rows`` straight into the table, in a savepoint; False (nothing written) when
    a row is refused: a bad value, or a key the table already holds (unique violation)."""
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
        table, sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    data = to_copy_text(rows.select(columns), target_columns)
    try:
        async with conn.transaction(), conn.cursor() as cur, cur.copy(copy) as pipe:
            await pipe.write(data)
    except psycopg.Error as exc:
        if not is_record_error(exc):
            raise
        return False  # a bad row (or a key inserted meanwhile): bisect on the staged path
    return True


async def _any_key_present(
    conn: psycopg.AsyncConnection,
    table: sql.Identifier,
    key: tuple[str, ...],
    rows: pa.Table,
    target_columns: dict[str, str],
) -> bool:
    """Whether the target holds any of these keys. A single numeric or temporal key is
    answered by one index range probe over [min, max] (a chunked backfill or an append never
    overlaps); other keys by probing each key."""
    column = rows.column(key[0])
    t = column.type
    ordered = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
    ordered = ordered or pa.types.is_temporal(t)
    if len(key) == 1 and ordered and not pa.types.is_duration(t):
        bounds = pc.min_max(column)
        kind = sql.SQL(target_columns[key[0]])  # catalog type
        probe = sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE {} BETWEEN %s::text::{} AND %s::text::{})"
        ).format(table, sql.Identifier(key[0]), kind, kind)
        if pa.types.is_temporal(t):  # by the integers: infinity has no Python datetime
            width = pa.int32() if t.bit_width == 32 else pa.int64()
            bounds = pc.min_max(column.cast(width))
            ends = pa.array([bounds["min"].as_py(), bounds["max"].as_py()], width).cast(t)
            params: Sequence[object] = as_text(ends).to_pylist()
        else:
            params = [bounds[b].cast(pa.string()).as_py() for b in ("min", "max")]
    else:
        probe = sql.SQL("SELECT EXISTS (SELECT 1 FROM {} AS t WHERE {})").format(
            table, key_match(key, target_columns)
        )
        params = key_params(rows, key)
    cur = await conn.execute(probe, params)
    row = await cur.fetchone()
    return row is None or bool(row[0])
