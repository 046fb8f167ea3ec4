"""The position fence on the server, for a :class:`ServerFence` (``remote`` without read-back).

The staged batch carries each row's canonical row key (``__rk``) and position (``__pos``).
Before the data statements, one probe of the shadow's primary key per staged row copies the
stored positions of the keys the shadow knows into the staging table's companion
(:mod:`.staging`), and one ``DELETE`` drops from the staging table the changes at or before
their key's stored position (snapshot rows never: they are the source's state when read).
After them the applied rows' positions are stored as slim shadow rows (:data:`FENCE_ONLY`, no
base; a delete: a tombstone): the keys the probe did not find with one plain ``INSERT``, the
others with one ``INSERT … ON CONFLICT``. All of it runs inside the data transaction; no key
list is sent as a parameter and no row goes to the engine. The probes are one per staged row
whatever the planner believes, so a shadow without planner statistics cannot turn the lookup
into a scan of the whole shadow. Rows that took the
direct ``COPY`` path (a backfill chunk into keys the target lacks) have no staging table: their
positions are copied into the shadow, or skipped altogether when they sit where the stream
resumes.

Positions compare as ``COLLATE "C"`` text: the byte order the engine's own comparison
(Polars strings) and every source's position format rely on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from syncengine.changes import OP_DELETE, OP_READ
from syncengine.targets.base import ServerFence
from syncengine.targets.postgres.ddl import state_table
from syncengine.targets.postgres.staging import Stage
from syncengine.targets.postgres.state import write_rows
from syncengine.targets.shadow import FENCE_ONLY, SHADOW_SCHEMA, TOMBSTONE

if TYPE_CHECKING:
    import polars as pl
else:
    from syncengine.deferred import polars as pl

#: the staging table's extra columns when a write carries a fence
STAGED = (("__rk", "text"), ("__pos", "text"))


def staged_columns(frame: pl.DataFrame, fence: ServerFence) -> list[pl.Series]:
    """``__rk`` and ``__pos`` for the staged rows (the batch's non-truncate rows, in order)."""
    keys = pl.from_arrow(fence.row_keys)
    assert isinstance(keys, pl.Series)
    return [keys.cast(pl.String).alias("__rk"), frame["_pos"].cast(pl.String).alias("__pos")]


async def drop_stale(conn: psycopg.AsyncConnection, pipeline: str, table: str, stage: Stage) -> int:
    """Delete the staged changes at or before their key's stored position, and note in the
    companion table which staged keys have a shadow row at all; how many keys have one.

    The stored position is a ``LATERAL … LIMIT 1`` subquery, i.e. one primary-key probe per
    staged row, whatever the planner believes about the shadow: as a join, a freshly filled
    shadow without statistics was hashed whole for every batch (1.1 s per 10k-row batch at 1M
    shadow rows, vs 0.1 s probing). The companion rows let :func:`record_staged` insert the
    keys the shadow lacks without probing them again (``ON CONFLICT`` probes each row once
    more before inserting it)."""
    cur = await conn.execute(
        sql.SQL(
            "INSERT INTO {had} (__row, __had) SELECT s.__row, f.position "
            "FROM {stg} AS s CROSS JOIN LATERAL (SELECT position FROM {shadow} "
            "WHERE pipeline = %s AND target_table = %s AND row_key = s.__rk LIMIT 1) AS f"
        ).format(had=stage.had, stg=stage.table, shadow=state_table("shadow")),
        (pipeline, table),
    )
    found = max(cur.rowcount, 0)
    if found:
        await conn.execute(
            sql.SQL(
                "DELETE FROM {stg} AS s USING {had} AS h WHERE h.__row = s.__row "
                'AND s.__op <> %s AND s.__pos COLLATE "C" <= h.__had COLLATE "C"'
            ).format(had=stage.had, stg=stage.table),
            (OP_READ,),
        )
    return found


async def record_staged(
    conn: psycopg.AsyncConnection,
    pipeline: str,
    table: str,
    stage: Stage,
    fence: ServerFence,
    rejected: list[int],
    probed: int | None,
    above: str | None = None,
) -> int:
    """Store the positions of the staged rows the target accepted; how many rows.

    ``probed``: how many staged keys :func:`drop_stale` found in the shadow (in the companion
    table), None when it did not run. After a probe the keys the shadow lacks are inserted
    plainly (nothing else writes this pipeline's shadow rows of the table inside the
    transaction) and only the others are upserted: a fresh key costs one index insertion
    instead of a probe plus a speculative insertion. ``above``: stream changes at or below it
    are stored not at all (the checkpoint committed with them fences them, floor.py)."""
    shadow = state_table("shadow")
    skip = [sql.SQL("s.__rk IS NOT NULL")]
    if rejected:  # a handful at most (bisected bad rows)
        skip.append(sql.SQL("NOT (s.__row = ANY(%(rejected)s))"))
    if not fence.snapshot_rows:
        skip.append(sql.SQL("s.__op <> %(read)s"))
    if above is not None:
        skip.append(sql.SQL('(s.__op = %(read)s OR s.__pos COLLATE "C" > %(above)s)'))
    if not fence.enforce:  # no tombstones: a deleted key loses its shadow row
        await conn.execute(
            sql.SQL(
                "DELETE FROM {} AS f USING {} AS s WHERE f.pipeline = %(p)s "
                "AND f.target_table = %(t)s AND f.row_key = s.__rk AND s.__op = %(delete)s"
            ).format(shadow, stage.table),
            {"p": pipeline, "t": table, "delete": OP_DELETE},
        )
        skip.append(sql.SQL("s.__op <> %(delete)s"))
    params = {"p": pipeline, "t": table, "delete": OP_DELETE, "read": OP_READ,
              "tomb": TOMBSTONE, "slim": FENCE_ONLY, "rejected": rejected,
              "above": above}  # fmt: skip
    insert = sql.SQL(
        "INSERT INTO {} (pipeline, target_table, row_key, row_hash, base, position) "
        "SELECT %(p)s, %(t)s, s.__rk, CASE WHEN s.__op = %(delete)s THEN %(tomb)s "
        "ELSE %(slim)s END, NULL, s.__pos FROM {} AS s "
    ).format(shadow, stage.table)
    upsert = sql.SQL(
        "ON CONFLICT (pipeline, target_table, row_key) DO UPDATE SET "
        "row_hash = EXCLUDED.row_hash, base = NULL, position = EXCLUDED.position"
    )
    where = sql.SQL(" AND ").join(skip)
    if probed is None:
        cur = await conn.execute(sql.SQL("{}WHERE {} {}").format(insert, where, upsert), params)
        return max(cur.rowcount, 0)
    cur = await conn.execute(
        sql.SQL("{}WHERE {} AND NOT EXISTS (SELECT 1 FROM {} AS h WHERE h.__row = s.__row)").format(
            insert, where, stage.had
        ),
        params,
    )
    n = max(cur.rowcount, 0)
    if probed:
        cur = await conn.execute(
            sql.SQL("{}JOIN {} AS h ON h.__row = s.__row WHERE {} {}").format(
                insert, stage.had, where, upsert
            ),
            params,
        )
        n += max(cur.rowcount, 0)
    return n


async def record_copied(
    conn: psycopg.AsyncConnection, pipeline: str, table: str, rows: pa.Table, fence: ServerFence
) -> int:
    """Store the positions of rows the direct ``COPY`` inserted (no deletes among them)."""
    if not fence.snapshot_rows:
        rows = rows.filter(pc.not_equal(rows.column("__op"), OP_READ))
    if not rows.num_rows:
        return 0
    n: int = rows.num_rows
    stored = pa.table(
        [rows.column("__rk"), pa.repeat(pa.scalar(FENCE_ONLY), n),
         pa.nulls(n, pa.string()), rows.column("__pos")],
        schema=SHADOW_SCHEMA,
    )  # fmt: skip
    await write_rows(conn, pipeline, table, stored)
    return n
