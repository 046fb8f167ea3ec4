"""Snapshot rows that need nothing but inserting: outside a transaction, in pipelined slices.

A backfill batch of ``r`` rows under a strategy that keeps no state for them (``remote`` on an
exported snapshot: docs/conflicts.md) is a pure load: no shadow rows, no checkpoint, no
truncate. A transaction adds nothing to such a batch:

* every row is an insert that turns into a replace-upsert if its ``_id`` exists
  (:func:`~syncengine.targets.mongo.bulk.bulk_write`), so replaying any part of it after a
  crash leaves each document as the replayed row says, none twice;
* the chunk's done-mark is written by the source only after ``apply`` returned, i.e. after the
  server acknowledged every insert, so it commits after the data (a crash before it re-reads
  the chunk and replays it as above).

Without one, the batch needs neither a session nor one big commit, and its inserts can run
while the next rows are converted: the batch is cut into :data:`SLICE_ROWS`-row slices, each
converted to documents in a worker thread while up to :data:`IN_FLIGHT` earlier slices are
being inserted. The server's work and the engine's conversion overlap instead of taking turns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pyarrow.compute as pc

from syncengine.changes import OP_READ, ChangeBatch
from syncengine.targets.base import ApplyResult, Checkpoint, TableWrite
from syncengine.targets.faults import fault_point
from syncengine.targets.mongo.bulk import bulk_write
from syncengine.targets.mongo.ops import RowWrites, plan_writes

#: rows converted and inserted at a time (small enough that a batch makes several, so the
#: conversion of one overlaps the insert of another; large enough for few round trips)
SLICE_ROWS = 2_000
#: slices being inserted at once (each on its own pooled connection)
IN_FLIGHT = 2


def pure_snapshot(writes: Sequence[TableWrite], checkpoint: Checkpoint | None) -> bool:
    """Whether a group is only snapshot rows of keyed tables, with no state to write."""
    if checkpoint is not None or not writes:
        return False
    for write in writes:
        shadow = write.shadow
        if not write.spec.key or shadow.deletes or shadow.fence is not None:
            return False
        if shadow.upserts is not None and shadow.upserts.num_rows:
            return False
        ops = write.batch.data.column("_op")
        if len(ops) and not pc.all(pc.equal(ops, OP_READ)).as_py():
            return False
    return True


async def insert_snapshot(db: Any, writes: Sequence[TableWrite]) -> ApplyResult:
    """Insert every row of ``writes`` (see :func:`pure_snapshot`); rows the server refuses for
    their content are in the result's ``rejected``."""
    result = ApplyResult()
    gate = asyncio.Semaphore(IN_FLIGHT)
    tasks: list[asyncio.Task[None]] = []

    async def insert(collection: Any, piece: TableWrite, plan: RowWrites) -> None:
        try:
            every = list(range(len(plan.rows)))
            await bulk_write(collection, piece, plan, every, result, None, range(len(every)))
        finally:
            gate.release()

    try:
        for write in writes:
            collection = db[write.spec.name]
            rows = write.batch.num_rows
            for start in range(0, rows, SLICE_ROWS):
                piece = _slice(write, start)
                # converted off the event loop: the slices already sent are inserted meanwhile
                plan = await asyncio.to_thread(plan_writes, piece.spec, piece.batch.data)
                await gate.acquire()
                tasks.append(asyncio.create_task(insert(collection, piece, plan)))
                for done in [t for t in tasks if t.done()]:
                    done.result()  # a failed slice stops the batch at once
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
    fault_point("mongo.after_data")
    return result


def _slice(write: TableWrite, start: int) -> TableWrite:
    """Rows ``start:start + SLICE_ROWS`` of a write that has no shadow changes."""
    batch = write.batch
    rows = ChangeBatch(batch.table, batch.data.slice(start, SLICE_ROWS), batch.key, batch.meta)
    return TableWrite(write.spec, rows)
