"""Set-wise apply of one compacted table write, inside the caller's transaction.

Steps: ``TRUNCATE`` (when the batch holds a ``t``); rows that only insert new keys (one probe
tells) are copied straight into the table; otherwise ``COPY`` into a temporary staging table,
then one ``DELETE … USING`` for the deletes and one ``INSERT … ON CONFLICT DO UPDATE`` per
*sent-column pattern*: ``c``/``r`` rows and updates
that sent every column share pattern 0; an update whose source left some columns unsent
(unchanged TOAST) only names the sent columns, so the target keeps the others, and a missing
row is created from what was sent. One round trip per statement, never per row.

Bad rows (constraint violations, values the column type refuses) make a statement fail as a
whole; the batch is then bisected inside savepoints until the offending rows are isolated.
They are returned as rejected (dead letters) and the rest commits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from syncengine.changes import OP_DELETE, OP_INSERT, OP_TRUNCATE, UNSENT_PREFIX
from syncengine.targets import stopping
from syncengine.targets.base import ApplyResult, ServerFence, TableWrite
from syncengine.targets.faults import fault_point
from syncengine.targets.postgres import fence, floor
from syncengine.targets.postgres.direct import copy_directly, copy_rows
from syncengine.targets.postgres.errors import first_line, is_record_error
from syncengine.targets.postgres.staged import Staged
from syncengine.targets.postgres.staging import Stage, StagingTables
from syncengine.targets.postgres.types import to_copy_text

if TYPE_CHECKING:
    import polars as pl
else:
    from syncengine.deferred import polars as pl

#: the staging table's own columns, ahead of the data columns
_STAGED = (("__row", "bigint"), ("__op", "text"), ("__pat", "integer"))


def prepare(write: TableWrite, target_columns: dict[str, str]) -> Staged:
    """Filter, number and classify the rows of a write (vectorized)."""
    if not write.batch.unsent_columns and not pc.any(pc.equal(write.batch.ops, "t")).as_py():
        return _prepare_sent(write, target_columns)
    key = list(write.spec.key)
    frame = write.batch.to_polars()
    truncate = bool(frame.height) and (frame["_op"] == OP_TRUNCATE).any()
    frame = frame.filter(pl.col("_op") != OP_TRUNCATE)
    columns = [c for c in write.batch.data_columns if c in target_columns]
    others = [c for c in columns if c not in key]
    unsent = [c for c in others if UNSENT_PREFIX + c in frame.columns]
    if unsent:
        is_update = pl.col("_op") == "u"
        keeps = pl.col("_op").is_in(["u", OP_INSERT])
        bits = [
            pl.when(
                (keeps if _added_with_default(write, c) else is_update)
                & pl.col(UNSENT_PREFIX + c).fill_null(False)
            )
            .then(pl.lit("1"))
            .otherwise(pl.lit("0"))
            for c in unsent
        ]
        signature = pl.concat_str(bits)
        frame = frame.with_columns(signature.alias("__sig"))
        sigs = sorted(frame["__sig"].unique().to_list())
        full = "0" * len(unsent)
        ordered = [full] + [s for s in sigs if s != full]
        ids = {s: i for i, s in enumerate(ordered)}
        frame = frame.with_columns(
            pl.col("__sig").replace_strict(ids, return_dtype=pl.Int32).alias("__pat")
        )
        patterns = {
            ids[s]: key + [c for c in others if c not in unsent or s[unsent.index(c)] == "0"]
            for s in ordered
        }
    else:
        frame = frame.with_columns(pl.lit(0, dtype=pl.Int32).alias("__pat"))
        patterns = {0: key + others}
    frame = frame.with_columns(
        pl.when(pl.col("_op") == OP_DELETE).then(-1).otherwise(pl.col("__pat")).alias("__pat")
    )
    frame = frame.with_row_index("__row").with_columns(pl.col("__row").cast(pl.Int64))
    staged = frame.select("__row", pl.col("_op").alias("__op"), "__pat", *columns)
    if write.shadow.fence is not None:
        staged = staged.with_columns(fence.staged_columns(frame, write.shadow.fence))
    return Staged(staged.to_arrow(), columns, patterns, truncate, frame)


def _added_with_default(write: TableWrite, column: str) -> bool:
    """Whether ``column`` was added at the source with a default its older rows hold
    (``pg_missing``): an insert read before it existed (joined with later batches, it leaves
    the column unsent) names only its own columns, so the target's default, the same value,
    fills it; written as null it would lose the value the row has at the source. Elsewhere
    an insert's unsent column is null: a Mongo document without the field replaces one
    that had it."""
    index = write.spec.schema.get_field_index(column)
    return index >= 0 and b"pg_missing" in (write.spec.schema.field(index).metadata or {})


def _prepare_sent(write: TableWrite, target_columns: dict[str, str]) -> Staged:
    """:func:`prepare` of a write whose rows sent every column and that does not truncate:
    one pattern (every column), deletes marked ``-1``, built from the Arrow columns by
    reference instead of a Polars round trip of every value."""
    data = write.batch.data
    key = list(write.spec.key)
    columns = [c for c in write.batch.data_columns if c in target_columns]
    ops = data.column("_op")
    pattern = pc.if_else(
        pc.equal(ops, OP_DELETE), pa.scalar(-1, pa.int32()), pa.scalar(0, pa.int32())
    )
    number = pa.array(np.arange(data.num_rows, dtype=np.int64))
    names = ["__row", "__op", "__pat", *columns]
    arrays = [number, ops, pattern, *(data.column(c) for c in columns)]
    if write.shadow.fence is not None:
        names += ["__rk", "__pos"]
        arrays += [write.shadow.fence.row_keys, data.column("_pos")]
    rows = pa.Table.from_arrays(arrays, names=names)
    original = data.append_column("__row", number)
    patterns = {0: key + [c for c in columns if c not in key]}
    return Staged(rows, columns, patterns, False, original)


@dataclass(frozen=True)
class Applied:
    """What :func:`apply_write` did: whether it truncated, the key columns of the rows the
    target refused (their shadow rows must not be written), and where the fence's positions
    are to be taken from: the staging table, or the rows copied directly."""

    truncated: bool
    refused: pl.DataFrame
    staging: Stage | None = None
    copied: pa.Table | None = None
    rejected: list[int] = field(default_factory=list)
    #: staged keys the fence probe found in the shadow (None: no probe ran)
    probed: int | None = None
    #: the staged rows (``__op``, ``__pos``), when a fence's positions come from the staging
    staged: pa.Table | None = None

    async def record_fence(
        self,
        conn: psycopg.AsyncConnection,
        pipeline: str,
        table: str,
        write: TableWrite,
        above: str | None = None,
    ) -> tuple[int, str | None]:
        """Store the positions of the rows applied (after any truncate's shadow clear); stream
        changes at or below ``above`` keep none (floor.py). How many rows were stored, and
        the highest position among them."""
        request = write.shadow.fence
        rows = self.staged if self.staging is not None else self.copied
        if request is None or rows is None:
            return 0, None
        keep = floor.recorded(rows, request, above)
        if not pc.any(keep).as_py():
            return 0, None  # a stream group at or below its checkpoint: nothing to store
        top = floor.highest(rows, keep)
        if self.staging is not None:
            n = await fence.record_staged(
                conn, pipeline, table, self.staging, request, self.rejected, self.probed, above
            )
            return n, top
        n = await fence.record_copied(conn, pipeline, table, rows.filter(keep), request)
        return n, top


async def apply_write(
    conn: psycopg.AsyncConnection,
    schema: str,
    write: TableWrite,
    target_columns: dict[str, str],
    result: ApplyResult,
    shadow_name: tuple[str, str],
    staging: StagingTables,
    probe: bool = True,
    above: str | None = None,
) -> Applied:
    """Apply one write in the open transaction. ``shadow_name``: (pipeline, table) of its
    shadow rows, for a write that carries a :class:`ServerFence` (stale rows are dropped
    before the data statements; :meth:`Applied.record_fence` stores the positions after).
    ``staging``: names the connection's temporary tables (staging.py). ``probe``: False when
    no shadow row can drop a change the checkpoint floor kept (floor.py); ``above``: stream
    changes at or below it keep no fence row (floor.py)."""
    table = sql.Identifier(schema, write.spec.name)
    staged = prepare(write, target_columns)
    if staged.truncate:
        await conn.execute(sql.SQL("TRUNCATE {}").format(table))
        result.truncated += 1
    none_refused = staged.keys(list(write.spec.key), [])
    if not staged.rows.num_rows:
        return Applied(staged.truncate, none_refused)
    request = write.shadow.fence
    # a fenced change may meet a tombstone even where the target lacks its key: only snapshot
    # rows (never fenced) or a batch that truncates first may skip the staged join
    fenced = request is not None and request.enforce and not staged.truncate and probe
    unfenced = not fenced or not pc.any(pc.not_equal(staged.rows.column("__op"), "r")).as_py()
    if unfenced and await copy_directly(conn, table, write, staged, target_columns):
        result.upserted += staged.rows.num_rows
        fault_point("postgres.after_stage")
        return Applied(staged.truncate, none_refused, copied=staged.rows)
    if not fenced and _no_fence_rows(staged, request, above):
        staged, inserted = await _copy_new_keys(conn, table, staged, target_columns)
        result.upserted += inserted
    shape = [*_STAGED, *((c, target_columns[c]) for c in staged.columns)]
    if request is not None:
        shape.extend(fence.STAGED)
    stage = await staging.take(conn, shape, staged.rows.num_rows)
    stg = stage.table
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
        stg, sql.SQL(", ").join(map(sql.Identifier, staged.rows.column_names))
    )
    pg_types = {c: target_columns[c] for c in staged.columns}

    async def copy_range(lo: int, hi: int) -> None:
        data = to_copy_text(staged.rows.slice(lo, hi - lo), pg_types)
        async with conn.cursor() as cur, cur.copy(copy) as pipe:
            await pipe.write(data)

    rejected: list[int] = []
    await bisect(conn, 0, staged.rows.num_rows, copy_range, rejected, result, staged, write)
    fault_point("postgres.after_stage")
    probed = await fence.drop_stale(conn, *shadow_name, stage) if fenced else None

    deletes = pc.any(pc.equal(staged.rows.column("__op"), OP_DELETE)).as_py()
    statements = _statements(
        table, stg, write.spec.key, staged.patterns, target_columns, deletes=bool(deletes)
    )
    counts = {"deleted": 0, "upserted": 0}

    async def statements_range(lo: int, hi: int) -> None:
        done = {"deleted": 0, "upserted": 0}
        async with conn.cursor() as cur:
            for kind, statement in statements:
                await cur.execute(statement, {"lo": lo, "hi": hi})
                done[kind] += max(cur.rowcount, 0)
        for kind, n in done.items():
            counts[kind] += n

    await bisect(conn, 0, staged.rows.num_rows, statements_range, rejected, result, staged, write)
    result.deleted += counts["deleted"]
    result.upserted += counts["upserted"]
    refused = staged.keys(list(write.spec.key), rejected)
    if request is not None:  # the fence's positions come from it, after the shadow's clear
        return Applied(
            staged.truncate, refused, stage, rejected=rejected, probed=probed,
            staged=staged.rows.select(["__op", "__pos"]),
        )  # fmt: skip
    return Applied(staged.truncate, refused)


#: fewer inserts than this go through the staging table with the rest (one statement less)
DIRECT_INSERTS = 1000


def _no_fence_rows(staged: Staged, request: ServerFence | None, above: str | None) -> bool:
    """Whether the write's inserts need no fence row (so none has to come from staging)."""
    if request is None:
        return True
    if not request.sparse or above is None:
        return False
    # the position column alone: filtering the whole staged table copied every column
    inserts = pc.equal(staged.rows.column("__op"), OP_INSERT)
    top = pc.max(pc.filter(staged.rows.column("__pos"), inserts)).as_py()
    return top is None or str(top) <= above


async def _copy_new_keys(
    conn: psycopg.AsyncConnection,
    table: sql.Identifier,
    staged: Staged,
    target_columns: dict[str, str],
) -> tuple[Staged, int]:
    """Inserts of keys new to the target go straight into it with one ``COPY`` (no staging,
    no ``INSERT … SELECT``), in a savepoint; the rest stays staged. A key the target holds
    already (a unique violation) or a bad value rolls the ``COPY`` back and every row takes the
    staged path, as before. Returns the rows left to stage and how many were inserted."""
    inserts = pc.equal(staged.rows.column("__op"), OP_INSERT)
    n = pc.sum(inserts).as_py() or 0
    if n < DIRECT_INSERTS or n == staged.rows.num_rows:  # all inserts: copy_directly's case
        return staged, 0
    rows = staged.rows.filter(inserts)
    if not await copy_rows(conn, table, rows, staged.columns, target_columns):
        return staged, 0
    return staged.without(inserts), n


def _statements(
    table: sql.Identifier,
    stg: sql.Identifier,
    key: tuple[str, ...],
    patterns: dict[int, list[str]],
    types: dict[str, str],
    deletes: bool = True,
) -> list[tuple[str, sql.Composed]]:
    """The data statements of one staged range: the deletes (only where the stage holds one:
    a stream group of updates would pay a round trip per table for nothing), then one upsert
    per column pattern."""
    in_range = sql.SQL("s.__row >= %(lo)s AND s.__row < %(hi)s")
    match = sql.SQL(" AND ").join(sql.SQL("t.{0} = s.{0}").format(sql.Identifier(k)) for k in key)
    out: list[tuple[str, sql.Composed]] = []
    if deletes:
        out.append(
            (
                "deleted",
                sql.SQL(
                    "DELETE FROM {} AS t USING {} AS s WHERE s.__op = 'd' AND {} AND {}"
                ).format(table, stg, in_range, match),
            )
        )
    conflict = sql.SQL(", ").join(map(sql.Identifier, key))
    for pattern, columns in patterns.items():
        names = sql.SQL(", ").join(map(sql.Identifier, columns))
        sources = sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in columns)
        others = [c for c in columns if c not in key]
        action: sql.Composable
        if others:
            sets = sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in others
            )
            current = sql.SQL(", ").join(_comparable("t", c, types[c]) for c in others)
            incoming = sql.SQL(", ").join(_comparable("EXCLUDED", c, types[c]) for c in others)
            # Skip rows that already hold these values: a replay writes nothing.
            action = sql.SQL("DO UPDATE SET {} WHERE ({}) IS DISTINCT FROM ({})").format(
                sets, sql.SQL("ROW({})").format(current), sql.SQL("ROW({})").format(incoming)
            )
        else:
            action = sql.SQL("DO NOTHING")
        out.append(
            (
                "upserted",
                sql.SQL(
                    "INSERT INTO {} AS t ({}) SELECT {} FROM {} AS s WHERE s.__pat = {} AND {} "
                    "ON CONFLICT ({}) {}"
                ).format(
                    table, names, sources, stg, sql.Literal(pattern), in_range, conflict, action
                ),
            )
        )
    return out


# Types without an equality operator are compared by their text form.
_NO_EQUALITY = ("json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle")


def _comparable(alias: str, column: str, pg_type: str) -> sql.Composable:
    ref = sql.SQL("{}.{}").format(sql.SQL(alias), sql.Identifier(column))
    if pg_type.removesuffix("[]") in _NO_EQUALITY:
        return sql.SQL("{}::text").format(ref)
    return ref


#: whether :func:`bisect` runs each range in a savepoint. Off for a first attempt at a group
#: (``PostgresTarget.apply``): two round trips a range that only a bad row ever needs; a
#: record error then aborts the group's transaction and the group is applied again with them.
ROW_SAVEPOINTS: ContextVar[bool] = ContextVar("row_savepoints", default=True)


async def bisect(
    conn: psycopg.AsyncConnection,
    lo: int,
    hi: int,
    step: Callable[[int, int], Awaitable[None]],
    rejected: list[int],
    result: ApplyResult,
    staged: Staged,
    write: TableWrite,
) -> None:
    """Run ``step`` on rows [lo, hi) in a savepoint; on a record error split until the bad
    rows are alone, reject those and keep the rest. Without :data:`ROW_SAVEPOINTS` the step
    runs as is and a record error ends the transaction (the caller applies again with them)."""
    if lo >= hi:
        return
    stopping.check()  # a stop request rolls the whole group back rather than wait for this
    if not ROW_SAVEPOINTS.get():
        await step(lo, hi)
        return
    try:
        async with conn.transaction():
            await step(lo, hi)
        return
    except psycopg.Error as exc:
        if not is_record_error(exc):
            raise
        if hi - lo == 1:
            rejected.append(lo)
            result.rejected.append((write.spec.name, _row(staged, lo), first_line(exc)))
            return
    mid = (lo + hi) // 2
    await bisect(conn, lo, mid, step, rejected, result, staged, write)
    await bisect(conn, mid, hi, step, rejected, result, staged, write)


def _row(staged: Staged, index: int) -> dict[str, object]:
    """The original change for a rejected row (per-row Python: rows set aside only)."""
    row = staged.original_frame.filter(pl.col("__row") == index).row(0, named=True)
    return {
        k: v
        for k, v in row.items()
        if not k.startswith("__") and not (k.startswith(UNSENT_PREFIX) and not v)
    }
