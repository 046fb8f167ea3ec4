"""Shadow rows, checkpoints and snapshot chunk marks in the target database's ``_syncengine``
schema.

They are written by the same transaction as the data, which is what makes a Postgres target
exactly-once: the data, what conflict detection will compare against, and the source position
become visible together or not at all. :class:`PostgresTargetState` is this module as the
:mod:`syncengine.state.targetdb` protocols; the slim rows of the server fence are written by the
data statements themselves (:mod:`.fence`).
"""

from __future__ import annotations

import io
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from psycopg import sql

from syncengine.state.base import Chunk
from syncengine.state.schema import FORMAT_VERSION
from syncengine.targets.base import Checkpoint, TableWrite
from syncengine.targets.postgres.ddl import state_table
from syncengine.targets.shadow import TOMBSTONE, shadow_table, stored_upserts


async def write_shadow(
    conn: psycopg.AsyncConnection,
    pipeline: str,
    write: TableWrite,
    truncated: bool,
    *,
    fresh: bool = True,
) -> None:
    """Clear (after a truncate), delete, then write shadow rows: keys new to the shadow by one
    ``COPY`` (unless not ``fresh``), the others staged by ``COPY`` and upserted (per-element
    array parameters, the way before, cost more than the data apply itself)."""
    shadow = state_table("shadow")
    table = write.spec.name
    if truncated:
        await conn.execute(
            sql.SQL("DELETE FROM {} WHERE pipeline = %s AND target_table = %s").format(shadow),
            (pipeline, table),
        )
    if write.shadow.deletes:
        await conn.execute(
            sql.SQL(
                "DELETE FROM {} WHERE pipeline = %s AND target_table = %s AND row_key = ANY(%b)"
            ).format(shadow),
            (pipeline, table, list(write.shadow.deletes)),
        )
    rows = stored_upserts(write)
    if not rows.num_rows:
        return
    upserts = write.shadow.upserts
    if fresh and upserts is not None and "fresh" in upserts.column_names:
        fresh = pc.fill_null(upserts.column("fresh"), False)
        if await _insert_fresh(conn, pipeline, table, rows.filter(fresh)):
            rows = rows.filter(pc.invert(fresh))
    if rows.num_rows:
        await _upsert(conn, pipeline, table, rows)


async def write_rows(
    conn: psycopg.AsyncConnection, pipeline: str, table: str, rows: pa.Table
) -> None:
    """Stored shadow rows (:data:`SHADOW_SCHEMA`): one ``COPY`` when none of their keys has a
    row yet, else staged and upserted."""
    if not await _insert_fresh(conn, pipeline, table, rows):
        await _upsert(conn, pipeline, table, rows)


async def _insert_fresh(
    conn: psycopg.AsyncConnection, pipeline: str, table: str, rows: pa.Table
) -> bool:
    """``COPY`` rows for keys that had no shadow row straight into the shadow table (half the
    work of staging and upserting); False if one exists after all (nothing written then)."""
    if not rows.num_rows:
        return True
    n = rows.num_rows
    full = rows.add_column(0, "pipeline", pa.repeat(pa.scalar(pipeline), n)).add_column(
        1, "target_table", pa.repeat(pa.scalar(table), n)
    )
    copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(
        state_table("shadow"), sql.SQL(", ").join(map(sql.Identifier, full.column_names))
    )
    try:
        async with conn.transaction():  # a savepoint: a duplicate key rolls back this COPY only
            async with conn.cursor() as cur, cur.copy(copy) as pipe:
                await pipe.write(_csv(full))
    except psycopg.errors.UniqueViolation:
        return False
    return True


async def _upsert(conn: psycopg.AsyncConnection, pipeline: str, table: str, rows: pa.Table) -> None:
    """Stage with ``COPY`` into a transaction-local table, then one upsert."""
    await upsert_per_key(conn, "shadow", SHADOW_STAGED, pipeline, table, rows)


#: the shadow's columns after its key, with their SQL types (staged as they are stored)
SHADOW_STAGED = (("row_hash", "text"), ("base", "text"), ("position", "text"))


#: at most this many rows are upserted by one statement with array parameters; more are staged
FEW_ROWS = 64


async def upsert_per_key(
    conn: psycopg.AsyncConnection,
    into: str,
    columns: Sequence[tuple[str, str]],
    pipeline: str,
    table: str,
    rows: pa.Table,
) -> None:
    """Upsert ``rows`` (``row_key`` then ``columns``, as (name, SQL type)) into the state table
    ``into`` keyed by (pipeline, target_table, row_key) with one ``INSERT … ON CONFLICT``:
    from array parameters for up to :data:`FEW_ROWS` rows, else from a transaction-local
    table staged with ``COPY``. ``columns`` are the module's own constants, never user input.

    Why both: per-element array parameters cost more than the data apply itself for a large
    group, while staging costs four round trips (create, copy, upsert, truncate) for the one
    fence row a keyless table records per live group."""
    names = [name for name, _ in columns]
    listed = sql.SQL(", ").join(map(sql.Identifier, ["row_key", *names]))
    upsert = sql.SQL(
        "INSERT INTO {} (pipeline, target_table, {}) SELECT %s, %s, {} FROM {} "
        "ON CONFLICT (pipeline, target_table, row_key) DO UPDATE SET {}"
    )
    updates = sql.SQL(", ").join(
        sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(n), sql.Identifier(n)) for n in names
    )
    typed = (("row_key", "text"), *columns)
    if rows.num_rows <= FEW_ROWS:
        arrays = sql.SQL("unnest({}) AS u ({})").format(
            sql.SQL(", ").join(sql.SQL("%s::{}[]").format(sql.SQL(t)) for _, t in typed),
            listed,
        )
        values = [rows.column(i).to_pylist() for i in range(len(typed))]  # as COPY: by order
        await conn.execute(
            upsert.format(state_table(into), listed, listed, arrays, updates),
            (pipeline, table, *values),
        )
        return
    stage = sql.Identifier(f"_syncengine_{into}_stage")
    staged = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(type_)) for name, type_ in typed
    )
    await conn.execute(
        sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
            stage, staged
        )
    )
    copy = sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(stage)
    async with conn.cursor() as cur, cur.copy(copy) as pipe:
        await pipe.write(_csv(rows))
    await conn.execute(
        upsert.format(state_table(into), listed, listed, stage, updates), (pipeline, table)
    )
    await conn.execute(sql.SQL("TRUNCATE {}").format(stage))


def _csv(rows: pa.Table) -> bytes:
    sink = io.BytesIO()
    pacsv.write_csv(rows, sink, pacsv.WriteOptions(include_header=False))
    return sink.getvalue()


async def write_checkpoint(
    conn: psycopg.AsyncConnection, pipeline: str, checkpoint: Checkpoint
) -> None:
    await conn.execute(
        sql.SQL(
            "INSERT INTO {} (pipeline, stream, position, details, version, updated_at) "
            "VALUES (%s, %s, %s, '{{}}', %s, %s) ON CONFLICT (pipeline, stream) DO UPDATE SET "
            "position = EXCLUDED.position, version = EXCLUDED.version, "
            "updated_at = EXCLUDED.updated_at"
        ).format(state_table("checkpoints")),
        (
            pipeline,
            checkpoint.stream,
            checkpoint.position,
            FORMAT_VERSION,
            datetime.now(UTC).isoformat(),
        ),
    )


async def purge_tombstones(conn: psycopg.AsyncConnection, pipeline: str, before: str) -> None:
    """Drop tombstones older than the checkpoint ``before``: a replay starts after the
    checkpoint, so they can no longer fence anything. Positions compare as bytes
    (``COLLATE "C"``), as everywhere else (floor.py): under a language collation a tombstone
    the checkpoint has not passed could be purged, and a replayed older change revive its key."""
    await conn.execute(
        sql.SQL(
            "DELETE FROM {} WHERE pipeline = %s AND row_hash = %s "
            'AND position COLLATE "C" < %s COLLATE "C"'
        ).format(state_table("shadow")),
        (pipeline, TOMBSTONE, before),
    )


async def read_checkpoint(conn: psycopg.AsyncConnection, pipeline: str, stream: str) -> str | None:
    cur = await conn.execute(
        sql.SQL("SELECT position FROM {} WHERE pipeline = %s AND stream = %s").format(
            state_table("checkpoints")
        ),
        (pipeline, stream),
    )
    row = await cur.fetchone()
    return row[0] if row else None


async def delete_checkpoint(conn: psycopg.AsyncConnection, pipeline: str, stream: str) -> None:
    await conn.execute(
        sql.SQL("DELETE FROM {} WHERE pipeline = %s AND stream = %s").format(
            state_table("checkpoints")
        ),
        (pipeline, stream),
    )


async def read_shadow(
    conn: psycopg.AsyncConnection, pipeline: str, table: str, row_keys: Sequence[str]
) -> pa.Table:
    """The shadow rows of these keys (:func:`probe_per_key`)."""
    if not row_keys:
        return shadow_table([])
    names = ["row_hash", "base", "position"]
    return shadow_table(await probe_per_key(conn, "shadow", names, pipeline, table, row_keys))


async def probe_per_key(
    conn: psycopg.AsyncConnection,
    from_: str,
    columns: Sequence[str],
    pipeline: str,
    table: str,
    row_keys: Sequence[str],
) -> list[tuple[Any, ...]]:
    """``(row_key, *columns)`` of the rows of the state table ``from_`` with these keys (a key
    it lacks is missing). The keys are copied into a session-local table and joined on the
    primary key: a key list sent as ``row_key = ANY(array)`` let the planner of a freshly
    filled, unanalysed shadow scan it whole and test every row against the whole list (one
    10k-key lookup against 130k shadow rows took 20.7 s, issue 16). One key is looked up
    directly: equality on the whole primary key is an index probe whatever the statistics,
    in one round trip instead of five (a keyless table's fence is read so every group)."""
    listed = sql.SQL(", ").join(map(sql.Identifier, columns))
    if len(row_keys) == 1:
        cur = await conn.execute(
            sql.SQL(
                "SELECT row_key, {} FROM {} WHERE pipeline = %s AND target_table = %s "
                "AND row_key = %s"
            ).format(listed, state_table(from_)),
            (pipeline, table, row_keys[0]),
        )
        return await cur.fetchall()
    keys = sql.Identifier("_syncengine_keys")
    async with conn.transaction():
        await conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} (row_key text) ON COMMIT DELETE ROWS"
            ).format(keys)
        )
        copy = sql.SQL("COPY {} (row_key) FROM STDIN (FORMAT csv)").format(keys)
        async with conn.cursor() as cur, cur.copy(copy) as pipe:
            await pipe.write(_csv(pa.table({"row_key": pa.array(list(row_keys), pa.string())})))
        # LATERAL … LIMIT (never flattened into a join): one primary-key probe per key,
        # whatever the table's statistics say (a plain join of a shadow without them hashed
        # the whole table for every batch)
        cur = await conn.execute(
            sql.SQL(
                "SELECT k.row_key, {} FROM {} AS k CROSS JOIN LATERAL (SELECT {} FROM {} "
                "WHERE pipeline = %s AND target_table = %s AND row_key = k.row_key LIMIT 1) AS f"
            ).format(
                sql.SQL(", ").join(sql.SQL("f.{}").format(sql.Identifier(c)) for c in columns),
                keys,
                listed,
                state_table(from_),
            ),
            (pipeline, table),
        )
        found = await cur.fetchall()
        # inside an outer transaction (a two-way group) ON COMMIT comes later: clear the keys
        # so the next probe of the same transaction does not see them
        await conn.execute(sql.SQL("TRUNCATE {}").format(keys))
    return found


async def mark_chunk_done(
    conn: psycopg.AsyncConnection, pipeline: str, chunk: Chunk, rows: int
) -> None:
    """The chunk's done-mark, in the transaction of its rows (``_syncengine.chunks``)."""
    await conn.execute(
        sql.SQL(
            "INSERT INTO {} (pipeline, source_table, chunk, lower_bound, upper_bound, status, "
            "row_count, updated_at) VALUES (%s, %s, %s, %s, %s, 'done', %s, %s) "
            "ON CONFLICT (pipeline, source_table, chunk) DO UPDATE SET "
            "lower_bound = EXCLUDED.lower_bound, upper_bound = EXCLUDED.upper_bound, "
            "status = 'done', row_count = EXCLUDED.row_count, updated_at = EXCLUDED.updated_at"
        ).format(state_table("chunks")),
        (
            pipeline,
            chunk.table,
            chunk.chunk,
            chunk.lower,
            chunk.upper,
            rows,
            datetime.now(UTC).isoformat(),
        ),
    )


async def done_chunks(
    conn: psycopg.AsyncConnection, pipeline: str, tables: Sequence[str]
) -> list[Chunk]:
    cur = await conn.execute(
        sql.SQL(
            "SELECT source_table, chunk, lower_bound, upper_bound, status, row_count "
            "FROM {} WHERE pipeline = %s AND source_table = ANY(%s) AND status = 'done'"
        ).format(state_table("chunks")),
        (pipeline, list(tables)),
    )
    return [Chunk(*row) for row in await cur.fetchall()]


async def forget_chunks(
    conn: psycopg.AsyncConnection, pipeline: str, tables: Sequence[str]
) -> None:
    await conn.execute(
        sql.SQL("DELETE FROM {} WHERE pipeline = %s AND source_table = ANY(%s)").format(
            state_table("chunks")
        ),
        (pipeline, list(tables)),
    )


class PostgresTargetState:
    """One pipeline's state in the target database, as the :mod:`syncengine.state.targetdb`
    protocols (``TargetDatabaseState`` and ``TargetSnapshotProgress`` over a connection). Every
    write joins the transaction open on the connection it is given."""

    def __init__(self, pipeline: str) -> None:
        self.pipeline = pipeline

    async def read_checkpoint(self, db: psycopg.AsyncConnection, stream: str) -> str | None:
        return await read_checkpoint(db, self.pipeline, stream)

    async def write_checkpoint(self, db: psycopg.AsyncConnection, checkpoint: Checkpoint) -> None:
        await write_checkpoint(db, self.pipeline, checkpoint)

    async def delete_checkpoint(self, db: psycopg.AsyncConnection, stream: str) -> None:
        await delete_checkpoint(db, self.pipeline, stream)

    async def read_shadow(
        self, db: psycopg.AsyncConnection, table: str, row_keys: Sequence[str]
    ) -> pa.Table:
        return await read_shadow(db, self.pipeline, table, row_keys)

    async def write_shadow(
        self,
        db: psycopg.AsyncConnection,
        writes: Sequence[TableWrite],
        truncated: Collection[str],
        *,
        fresh: bool = True,
    ) -> None:
        for write in writes:
            await write_shadow(db, self.pipeline, write, write.spec.name in truncated, fresh=fresh)

    async def purge_tombstones(self, db: psycopg.AsyncConnection, before: str) -> None:
        await purge_tombstones(db, self.pipeline, before)

    async def mark_done(self, db: psycopg.AsyncConnection, chunk: Chunk, rows: int) -> None:
        await mark_chunk_done(db, self.pipeline, chunk, rows)

    async def done_chunks(self, db: psycopg.AsyncConnection, tables: Sequence[str]) -> list[Chunk]:
        return await done_chunks(db, self.pipeline, tables)

    async def forget_chunks(self, db: psycopg.AsyncConnection, tables: Sequence[str]) -> None:
        await forget_chunks(db, self.pipeline, tables)
