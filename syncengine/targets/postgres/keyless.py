"""Set-wise apply of a keyless table's changes, inside the caller's transaction.

The batch is reduced to its multiset delta (:func:`syncengine.keyless.delta`), then:

1. ``TRUNCATE`` when the batch holds a ``t`` (a keyless snapshot starts with one);
2. the old images to remove are staged (one row per distinct image, with how many copies go)
   and one ``DELETE … WHERE ctid = ANY(ARRAY(…))`` removes, per image, that many of the
   equal target rows: target rows are joined to the staged images on the text form of the
   whole row, which is null-safe (``NULL`` and ``''`` print differently, two NULLs alike) and
   hashable, so it is one scan of the target and a hash join, and ``row_number()`` over each
   image picks the n first matches, so of two identical rows one stays;
3. the rows to append go straight in with one ``COPY``.

Rows the target refuses (a CHECK constraint, a value the type rejects) are isolated by
bisecting the append in savepoints and returned as rejected; the rest commits.
"""

from __future__ import annotations

import logging
from itertools import count
from typing import TYPE_CHECKING

import psycopg
from psycopg import sql

from syncengine.keyless import COUNT, delta
from syncengine.targets.base import ApplyResult, TableWrite
from syncengine.targets.postgres.apply import bisect
from syncengine.targets.postgres.staged import Staged
from syncengine.targets.postgres.types import to_copy_text

if TYPE_CHECKING:
    import polars as pl
else:
    from syncengine.deferred import polars as pl

log = logging.getLogger("syncengine.targets.postgres")

_names = count()


async def apply_keyless(
    conn: psycopg.AsyncConnection,
    schema: str,
    write: TableWrite,
    target_columns: dict[str, str],
    result: ApplyResult,
) -> tuple[bool, pl.DataFrame]:
    """Apply one keyless write in the open transaction; returns whether the table was
    truncated and (always empty: a keyless table has no per-key shadow) refused keys."""
    table = sql.Identifier(schema, write.spec.name)
    columns = [c for c in write.batch.data_columns if c in target_columns]
    change = delta(write.batch, columns)
    if change.truncate:
        await conn.execute(sql.SQL("TRUNCATE {}").format(table))
        result.truncated += 1
    for row in change.unmatched.iter_rows(named=True):  # rows set aside: per-row is fine
        result.rejected.append((write.spec.name, _payload(row), change.reason))
    types = {c: target_columns[c] for c in columns}
    if change.removes.height:
        result.deleted += await _remove(conn, table, change.removes, columns, types)
    if change.appends.height:
        rows = change.appends.select(columns)
        result.upserted += await _append(conn, table, rows, types, write, result)
    return change.truncate, pl.DataFrame()


async def _remove(
    conn: psycopg.AsyncConnection,
    table: sql.Identifier,
    removes: pl.DataFrame,
    columns: list[str],
    types: dict[str, str],
) -> int:
    stg = sql.Identifier(f"_syncengine_gone_{next(_names)}")
    # types: the catalog's format_type output
    typed = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(types[c])) for c in columns]
    await conn.execute(
        sql.SQL("CREATE TEMP TABLE {} ({} bigint, __g bigint, {}) ON COMMIT DROP").format(
            stg, sql.Identifier(COUNT), sql.SQL(", ").join(typed)
        )
    )
    staged = removes.with_row_index("__g").select(COUNT, pl.col("__g").cast(pl.Int64), *columns)
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
        stg, sql.SQL(", ").join(map(sql.Identifier, staged.columns))
    )
    async with conn.cursor() as cur, cur.copy(copy) as pipe:
        await pipe.write(to_copy_text(staged.to_arrow(), types))

    def image(alias: str) -> sql.Composable:
        refs = sql.SQL(", ").join(
            sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(c)) for c in columns
        )
        return sql.SQL("ROW({})::text").format(refs)

    statement = sql.SQL(
        "DELETE FROM {table} WHERE ctid = ANY (ARRAY("
        "SELECT m.tid FROM (SELECT t.ctid AS tid, s.{n} AS n, "
        "row_number() OVER (PARTITION BY s.__g ORDER BY t.ctid) AS rn "
        "FROM {table} AS t JOIN {stg} AS s ON {left} = {right}) m WHERE m.rn <= m.n))"
    ).format(table=table, n=sql.Identifier(COUNT), stg=stg, left=image("t"), right=image("s"))
    async with conn.cursor() as cur:
        await cur.execute(statement)
        deleted = max(cur.rowcount, 0)
    await conn.execute(sql.SQL("DROP TABLE {}").format(stg))
    wanted = int(removes[COUNT].sum())
    if deleted < wanted:
        log.warning(
            "%s: %d of %d rows to delete or update were not found in the target (changed "
            "there, or never copied)",
            table.as_string(None),
            wanted - deleted,
            wanted,
        )
    return deleted


async def _append(
    conn: psycopg.AsyncConnection,
    table: sql.Identifier,
    rows: pl.DataFrame,
    types: dict[str, str],
    write: TableWrite,
    result: ApplyResult,
) -> int:
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
        table, sql.SQL(", ").join(map(sql.Identifier, rows.columns))
    )

    async def copy_range(lo: int, hi: int) -> None:
        async with conn.cursor() as cur, cur.copy(copy) as pipe:
            await pipe.write(to_copy_text(rows.slice(lo, hi - lo).to_arrow(), types))

    # the staged path's bisection, over the appended rows (``__row``: their numbers)
    original = rows.with_row_index("__row").with_columns(pl.col("__row").cast(pl.Int64))
    staged = Staged(rows.to_arrow(), rows.columns, {}, False, original)
    refused: list[int] = []
    await bisect(conn, 0, rows.height, copy_range, refused, result, staged, write)
    return rows.height - len(refused)


def _payload(row: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in row.items() if not k.startswith("__")}
