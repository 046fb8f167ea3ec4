"""Fencing epochs in the target database: which attempt may commit for a pipeline.

Cluster mode runs a pipeline's stream as one Temporal activity; when its worker stops
heartbeating, Temporal starts the activity again elsewhere. A worker that was only paused
(SIGSTOP, a long GC pause, a frozen VM) still believes it holds the pipeline when it wakes,
and the target's primary keys alone would not stop it committing rows and a checkpoint behind
its successor's. So every attempt first :func:`claim`\\ s the pipeline, which bumps a counter in
``_syncengine.epochs`` in a transaction of its own, and then checks it (:func:`hold`) inside
every transaction it commits. A commit whose epoch is no longer the stored one raises
:class:`~syncengine.errors.Fenced` there, and the transaction rolls back with everything in it.

Why there is no window: :func:`hold` reads the row ``FOR SHARE``, which a claim's update waits
for until the holder's transaction ended. Either the old attempt's transaction commits first
(then the claim, and the new attempt's read of the checkpoint, come after it), or the claim
commits first (then the old attempt's check, reading the latest row version, sees the newer
epoch and refuses). The row is locked only from the check to the commit (the check runs last).

A fence is named by a pipeline (its stream) or, for the cluster backfill's chunk activities,
by one chunk (:func:`chunk_fence_name`): each attempt at a chunk claims that chunk's fence, and
the chunk's commit (rows and done-mark) checks it. The sink shared by a worker's concurrent
chunk activities learns a chunk's fence from :data:`chunk_fence`, set by the activity's own
task around its copy, so two attempts at one chunk on one worker never share a claim.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from syncengine.targets.fencing import stale
from syncengine.targets.postgres.ddl import state_table

#: (fence name, epoch) the chunk this task copies commits under (None: the sink's own)
chunk_fence: ContextVar[tuple[str, int] | None] = ContextVar("chunk_fence", default=None)


def chunk_fence_name(pipeline: str, table: str, chunk: int) -> str:
    """The fence of one backfill chunk (its activity ID, under its pipeline)."""
    return f"{pipeline}:chunk:{table}:{chunk}"


@dataclass(frozen=True)
class Epoch:
    """A pipeline's current epoch and who claimed it (``status`` shows it)."""

    epoch: int
    holder: str
    claimed_at: str


async def claim(conn: psycopg.AsyncConnection, pipeline: str, holder: str) -> int:
    """Take the pipeline (or chunk) over: the next epoch, committed before this returns
    (``conn`` must be idle; the claim is its own transaction so that a paused holder sees it
    at once)."""
    async with conn.transaction():
        cur = await conn.execute(
            sql.SQL(
                "INSERT INTO {} AS e (pipeline, epoch, holder, claimed_at) VALUES (%s, 1, %s, %s) "
                "ON CONFLICT (pipeline) DO UPDATE SET epoch = e.epoch + 1, "
                "holder = EXCLUDED.holder, claimed_at = EXCLUDED.claimed_at RETURNING e.epoch"
            ).format(state_table("epochs")),
            (pipeline, holder, datetime.now(UTC).isoformat()),
        )
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def hold(conn: psycopg.AsyncConnection, pipeline: str, epoch: int) -> None:
    """Inside the transaction about to commit: go on only while ``epoch`` is the pipeline's
    current one, and keep a claim from passing until this transaction ended."""
    cur = await conn.execute(
        sql.SQL("SELECT epoch, holder FROM {} WHERE pipeline = %s FOR SHARE").format(
            state_table("epochs")
        ),
        (pipeline,),
    )
    row = await cur.fetchone()
    if row is None or int(row[0]) != epoch:
        raise stale(pipeline, epoch, (int(row[0]), str(row[1])) if row else None)


async def current(conn: psycopg.AsyncConnection, pipeline: str) -> Epoch | None:
    """The stored epoch (None: no attempt ever claimed the pipeline)."""
    cur = await conn.execute(
        sql.SQL("SELECT epoch, holder, claimed_at FROM {} WHERE pipeline = %s").format(
            state_table("epochs")
        ),
        (pipeline,),
    )
    row = await cur.fetchone()
    return Epoch(int(row[0]), str(row[1]), str(row[2])) if row else None
