"""The three ways a pipeline runs, on top of :class:`~syncengine.runtime.pipeline.Pipeline`.

* :func:`backfill` — consistent copy of current state, resumable per chunk; ends by
  checkpointing the stream position the copy is consistent with.
* :func:`stream` — apply changes after the checkpoint, forever or up to ``until``.
* :func:`sync_once` — backfill when there is no checkpoint, then drain up to "now".

Between reading and applying sits a bounded queue (backpressure: a slow target slows the
reader, memory stays bounded). The applier takes what is queued, up to ``max_rows`` rows
(``GROUP_BATCHES × max_rows`` for a target that ``grows_groups``), as one group: one target
transaction, checkpointed at the last commit boundary in the group, then acknowledged to the
source.

A group ends *at* a commit boundary (a batch carrying ``meta["resume"]``): batches read after
the last boundary are held for the next group, never committed ahead of their checkpoint.
Rows committed past the checkpoint would be delivered again after a crash, cut into batches
differently, and a group holding only a key's older change would overwrite the newer one
already committed. Only a source transaction bigger than ``HOLD_GROUPS × max_rows``
rows is committed in parts (memory stays bounded); a crash inside it replays it whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any, Protocol

from syncengine.changes import ECHO, ChangeBatch
from syncengine.errors import Interrupted
from syncengine.passthrough import RawChunkExport
from syncengine.runtime import captured, passthrough, pausing, resync
from syncengine.runtime.beside import Lane
from syncengine.runtime.cancelling import cancel_and_wait
from syncengine.runtime.copypace import CopyPace
from syncengine.runtime.inflight import InFlight, deadline
from syncengine.runtime.pipeline import BatchReport, Pipeline
from syncengine.runtime.tableops import RESNAPSHOT, TableOps
from syncengine.runtime.warmup import FIRST_GROUP_IMPORTS, warm_up
from syncengine.sources.base import resume_position
from syncengine.targets.base import Checkpoint, Target
from syncengine.targets.stopping import stoppable

log = logging.getLogger("syncengine.runner")

QUEUE_BATCHES = 8
#: rows held waiting for a commit boundary, in units of ``max_rows``, before a group is
#: committed without one (a source transaction too big to hold)
HOLD_GROUPS = 8
#: under a backlog a group takes up to this many batches' rows (``× max_rows``) of what is
#: already queued; past ``max_rows`` only batches shaped like the earlier ones of their table
#: (``_same_shape``). Each group pays fixed costs: its target transaction, staging, the fence
#: and checkpoint statements, a round trip each. A drain of 1M changes in groups of 10,000
#: spent ≈ 8 ms a group on them; in groups of up to 40,000 it ran 10-20 % faster. Idle, a
#: group is whatever arrived, so the latency of a quiet stream does not change.
GROUP_BATCHES = 4
_END = object()
#: how often an idle applier looks for pause / resume requests
CONTROL_SECONDS = 1.0


class Progress(Protocol):
    """What a backfill reports rows copied to (the CLI's progress bar)."""

    def advance(self, table: str, rows: int) -> None: ...


async def backfill(
    pipeline: Pipeline,
    tables: Sequence[str] | None = None,
    where: str | None = None,
    parallel: int | None = None,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Copy current state; returns rows copied. Resumes at the first chunk not yet done.
    ``stop`` (set by a signal) ends it between batches with :class:`Interrupted`.
    ``parallel``: chunks copied at once (None: the pipeline's ``backfill.parallel``).

    Batches are consumed one at a time, straight from the source: the source records a chunk
    as done only once the consumer asks for the next batch, i.e. after the target commit.
    """
    copied = 0
    if parallel is None:
        parallel = pipeline.config.backfill.parallel
    fresh = await pipeline.checkpoint() is None
    if not fresh:
        forget_finished(pipeline)
    if hasattr(pipeline.source, "stream_starts_at_snapshot"):  # optional for plugin sources
        # no checkpoint yet: the one written below is the snapshot's position, where the
        # stream then starts (a re-backfill keeps an older checkpoint: its rows are fenced)
        pipeline.source.stream_starts_at_snapshot = fresh
    log.info("%s: backfill, %d chunk(s) at once", pipeline.name, parallel)
    await passthrough.attach(pipeline, tables, first=fresh)
    # every batch of such a source is decoded and mapped
    warming = None if isinstance(pipeline.source, RawChunkExport) else warm_up()
    waited = time.perf_counter()
    async for batch in pipeline.source.snapshot(tables, where, parallel):
        pipeline.phases.add("read", time.perf_counter() - waited)
        if not pipeline.config.backfill.copy_rows:
            # a two-way pipeline's reverse direction (a mesh's directions out of all nodes but
            # the first) copies nothing (the forward backfill copied the rows): its snapshot
            # only tells the shadow what its source holds at the position its stream starts
            # from, the version both sides share
            batch = replace(batch, meta={**batch.meta, ECHO: True})
        with stoppable(stop):
            report = await process(pipeline, [batch], None)
        # a reconciled snapshot also sends the deletes since its position: not copied rows
        if not batch.meta.get("deletes"):
            copied += report.read
            if progress is not None:
                progress.advance(batch.table, report.read)
        if stop is not None and stop.is_set():
            raise Interrupted(
                f"{pipeline.name}: backfill interrupted after {copied} rows",
                hint="progress is checkpointed per chunk; run it again to resume",
            )
        waited = time.perf_counter()
    await passthrough.finish(pipeline)
    if warming is not None:
        warming.join()  # done long since, unless nothing was copied: no import left at exit
    position = await pipeline.source.snapshot_position()
    existing = await pipeline.checkpoint()
    if existing is not None and (position is None or existing < position):
        # A re-backfill never moves the stream forward: a snapshot only upserts, so deletes
        # made between the old checkpoint and the snapshot must still come from the stream.
        position = existing
    if position is not None and position != existing:
        await pipeline.target.apply([], Checkpoint(pipeline.stream_name, position))
        await pipeline.source.acknowledge(position)
    if tables is None:  # every table copied: the stream captures them from here
        await captured.remember(pipeline)
    log.info("%s: backfill complete, %d rows, consistent with %s", pipeline.name, copied, position)
    log.info("%s: backfill phases: %s", pipeline.name, pipeline.phases.summary())
    return copied


def forget_finished(pipeline: Pipeline) -> None:
    """Clear the chunk progress of tables whose chunks are all done, once the target holds a
    checkpoint (a backfill completed): the next backfill copies them again. Without a
    checkpoint, done chunks belong to a backfill that died before its end, and the source
    resumes it: starting over would stream from a later position and lose the deletes made
    since those chunks were read (ghost rows)."""
    chunks = pipeline.state.get_chunks(pipeline.name)
    for table in sorted({c.table for c in chunks}):
        if all(c.status == "done" for c in chunks if c.table == table):
            pipeline.state.clear_chunks(pipeline.name, table)


async def stream(
    pipeline: Pipeline,
    start: str | None,
    until: str | None = None,
    stop: asyncio.Event | None = None,
    side: AsyncIterator[ChangeBatch | SideStep] | None = None,
) -> int:
    """Apply changes after ``start``; returns rows applied. Stops at ``until`` or on ``stop``.

    ``side``: snapshot batches of single tables (:mod:`syncengine.runtime.tableops`) applied
    between groups, or beside them on a second target connection (:mod:`.beside`), each
    committed (without moving the checkpoint) before the next is asked for; their rows carry
    positions, so the fence orders them with the stream's changes. A :class:`SideStep` in it
    is awaited between groups too (it writes to the target itself)."""
    stop = stop or asyncio.Event()
    queue = _Queue(maxsize=QUEUE_BATCHES)
    max_rows = pipeline.config.batch.max_rows
    #: a target that does not take larger groups (the Mongo target's transactions, Parquet's
    #: files) is given groups of at most ``max_rows`` rows, as before
    grown = GROUP_BATCHES if getattr(pipeline.target, "grows_groups", False) else 1

    async def read() -> None:
        try:
            async for batch in pipeline.source.stream(start, until):
                await queue.put(batch)
                if stop.is_set():
                    break
        except asyncio.CancelledError:
            raise  # the applier stopped: nobody waits for _END (and the queue may be full)
        except BaseException:
            await queue.put(_END)  # wake the applier; it re-raises this reader's error
            raise
        else:
            await queue.put(_END)

    reader = asyncio.create_task(read(), name=f"{pipeline.name}-reader")
    stopper = asyncio.create_task(stop.wait())
    sidecar = _SideBatches(pipeline, side, stop)
    #: the group committing while the next is prepared (its failure wakes the loop at once)
    flight = InFlight(pipeline)
    applied = 0  # side batches' rows (the stream's own: flight.applied)
    #: batches read after the last commit boundary (none of them carries a resume)
    held: list[ChangeBatch] = []
    try:
        done = False
        await pausing.control(pipeline)
        while not done:
            if queue.empty():
                pipeline.source.want()  # idle: committed changes need not wait for max_wait
            getter = asyncio.ensure_future(queue.get())
            waited = time.perf_counter()
            committing = flight.waiting()
            finished = await _next(getter, stopper, pipeline, sidecar.waiting(), committing)
            pipeline.phases.add("read", time.perf_counter() - waited)
            if any(task in finished for task in committing):
                await flight.settle()  # it ended: a failure stops the stream now, not later
                if not getter.done():
                    getter.cancel()
                    continue
                finished.add(getter)
            if sidecar.ready(finished, getter in finished) and not stop.is_set():
                await flight.settle()  # a side batch commits on the stream's connection
                with stoppable(stop):
                    applied += await sidecar.apply()
                if not getter.done():  # (it may have taken a batch while the side one applied)
                    getter.cancel()
                    continue
                finished.add(getter)
            if getter not in finished:
                getter.cancel()
                break  # stop requested while idle: what is held is handled below
            item = getter.result()
            while True:
                if item is _END:
                    done = True
                    break
                assert isinstance(item, ChangeBatch)
                held.append(item)
                rows = _rows(held)
                if rows >= grown * max_rows or queue.empty():
                    break
                if rows >= max_rows and not _same_shape(held, queue.peek()):
                    break
                item = queue.get_nowait()
            group, held = _through_boundary(held)
            if not group and _rows(held) >= HOLD_GROUPS * max_rows:
                group, held = held, []  # one huge source transaction: commit it in parts
            if done:
                await asyncio.wait({reader})  # _END was its last act
                if not stop.is_set() and reader.exception() is None:
                    group, held = group + held, []  # the stream ended: nothing more comes
            if group:
                pauses = pipeline.state.pauses(pipeline.name)
                if pauses:
                    await flight.settle()  # a pause acts on what the target committed
                await pausing.control(pipeline, pauses)  # pause / resume requests, between groups
                with stoppable(stop):  # a group being bisected gives up on stop
                    await flight.submit(group)
            sidecar.stream_turn()  # (even without a whole group: the side's turn comes next)
            if stop.is_set():
                break
        failure = reader.exception() if reader.done() else None
        if failure is not None:
            with contextlib.suppress(Exception):
                await flight.settle()  # what commits stays committed and acknowledged
            raise failure
        await flight.settle()
        if stop.is_set():
            # apply what was already read, up to its last commit boundary (the rest is read
            # again from the checkpoint next time); never after a failed group: its rows would
            # be skipped by the later checkpoint
            await _cancel(reader)
            while not queue.empty():
                item = queue.get_nowait()
                if isinstance(item, ChangeBatch):
                    held.append(item)
            leftovers, _ = _through_boundary(held)
            if leftovers:
                with stoppable(stop):
                    await flight.submit(leftovers)
                    await flight.settle()
    finally:
        stopper.cancel()
        await flight.cancel()
        await _cancel(reader)
        await sidecar.close()
    log.info("%s: stream phases: %s", pipeline.name, pipeline.phases.summary())
    return applied + flight.applied


async def _next(
    getter: asyncio.Future[object],
    stopper: asyncio.Task[bool],
    pipeline: Pipeline,
    side: Sequence[asyncio.Future[Any]] = (),
    committing: Sequence[asyncio.Future[Any]] = (),
) -> set[asyncio.Future[Any]]:
    """Wait for the next batch, the next side batch, the end of the commit in flight or a
    stop; while idle, pause and resume requests are still carried out every
    :data:`CONTROL_SECONDS` (not while a commit is in flight: a release applies on its
    connection)."""
    waiting: set[asyncio.Future[Any]] = {getter, stopper, *side, *committing}
    while True:
        finished, _ = await asyncio.wait(
            waiting, timeout=CONTROL_SECONDS, return_when=asyncio.FIRST_COMPLETED
        )
        if finished:
            return finished
        if not committing:
            await pausing.control(pipeline)


class SideStep(Protocol):
    """Work a side iterator hands the applier to run between groups; returns rows written."""

    async def __call__(self) -> int: ...


#: a side batch is applied in slices of about this many seconds each, a stream group between
#: two slices: a 10,000-row snapshot batch applied whole held the other tables' groups back
#: for its whole apply (their p99 lag rose 2-8x during a table's snapshot, pg_add_table)
SIDE_SLICE_SECONDS = 0.1
SIDE_SLICE_ROWS = (500, 10_000)


class _SideBatches:
    """The next batch of ``stream``'s ``side`` iterator, asked for only after the previous one
    was applied (the source marks a chunk done when asked for the batch after its last).

    A keyed snapshot batch is applied in slices sized to :data:`SIDE_SLICE_SECONDS` by the
    rate of the slices before, each committed on its own. Between groups, the stream's next
    group is applied between two of them; a table's batches after its first go beside the
    stream on a second target connection where the target and the table allow
    (:mod:`.beside`), while groups keep committing. Snapshot rows are fenced per key, so a
    slice committed before a crash is simply copied again with its chunk (which is marked
    done only after its last)."""

    def __init__(
        self,
        pipeline: Pipeline,
        side: AsyncIterator[ChangeBatch | SideStep] | None,
        stop: asyncio.Event | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.side = side
        self.stop = stop or asyncio.Event()
        self.next: asyncio.Future[ChangeBatch | SideStep] | None = None
        self.slice_rows = SIDE_SLICE_ROWS[0]
        #: the stream took its turn since the last side item
        self.group_went = False
        self.lane = Lane(pipeline)
        #: the batch being applied beside the stream (it asks for the next when done)
        self.beside: asyncio.Task[int] | None = None
        self.beside_rows = SIDE_SLICE_ROWS[0]
        #: the table being copied and how its slices beside the stream are paced
        self.pace: tuple[str, CopyPace] | None = None
        self._ask()

    def _ask(self) -> None:
        if self.side is not None:
            self.next = asyncio.ensure_future(anext(self.side))

    def waiting(self) -> list[asyncio.Future[Any]]:
        if self.beside is not None:
            return [self.beside]
        return [self.next] if self.next is not None else []

    def ready(self, finished: set[asyncio.Future[Any]], group_ready: bool = False) -> bool:
        """The side item is there and it is its turn: a stream group that is ready goes
        first, unless one went since the last side item (they alternate, so neither starves).
        A group that arrives during a slice waits for that slice alone. A batch that goes
        beside the stream starts at once; its end is taken as soon as it is there."""
        if self.beside is not None:
            return self.beside in finished
        if self.next is None or self.next not in finished:
            return False
        return self._goes_beside() or self.group_went or not group_ready

    def _goes_beside(self) -> bool:
        future = self.next
        if future is None or not future.done() or future.exception() is not None:
            return False
        batch = future.result()
        return isinstance(batch, ChangeBatch) and self.lane.takes(batch)

    def stream_turn(self) -> None:
        self.group_went = True

    async def apply(self) -> int:
        if self.beside is not None:  # its batch committed (or it failed: raised here)
            task, self.beside = self.beside, None
            return task.result()
        assert self.next is not None
        if self._goes_beside():
            batch = self.next.result()
            assert isinstance(batch, ChangeBatch)
            self.next = None
            self.beside = asyncio.create_task(self._apply_beside(batch))
            return 0
        self.group_went = False
        try:
            batch = self.next.result()  # a failure of the side snapshot stops the stream too
        except StopAsyncIteration:
            self.next = self.side = None
            return 0
        if not isinstance(batch, ChangeBatch):
            written = await batch()
            self.pace = None  # a copy's end (its sweep), or another request
            self._ask()
            return written
        if self.pace is None or self.pace[0] != batch.table:  # a copy starts
            self.pace = (batch.table, CopyPace(self.pipeline.stream_lag))
        rest: ChangeBatch | None = None
        if batch.key:
            batch, rest = _cut(batch, self.slice_rows)
        started = time.perf_counter()
        report = await process(self.pipeline, [batch], None)
        self.slice_rows = _sized(batch.num_rows, time.perf_counter() - started, self.slice_rows)
        if batch.key:  # its table exists at the target now; no transaction is open
            self.lane.register(batch.table)
        if rest is None:
            self._ask()
        else:  # the rest is ready at once: the next turn applies it, after a stream group
            self.next = asyncio.get_running_loop().create_future()
            self.next.set_result(rest)
        return sum(report.applied.values())

    async def _apply_beside(self, batch: ChangeBatch) -> int:
        """``batch`` in slices on the lane's connection; the next side item is asked for
        after its last slice committed, never after a stop (its chunk is copied again)."""
        target = self.lane.target()
        written = 0
        rest: ChangeBatch | None = batch
        with stoppable(self.stop):
            while rest is not None:
                if self.stop.is_set():
                    return written
                part, rest = _cut(rest, self.beside_rows)
                started = time.perf_counter()
                report = await process(self.pipeline, [part], None, target)
                took = time.perf_counter() - started
                self.beside_rows = _sized(part.num_rows, took, self.beside_rows)
                written += sum(report.applied.values())
                if self.pace is not None and self.pace[0] == batch.table:
                    await asyncio.sleep(self.pace[1].after(took))  # the stream's lag allows
        self._ask()
        return written

    async def close(self) -> None:
        if self.beside is not None:  # its slice ends (a stop ends it after that slice)
            with contextlib.suppress(BaseException):
                await self.beside
            self.beside = None
        await self.lane.close()
        if self.next is not None and not self.next.done():
            self.next.cancel()
            with contextlib.suppress(BaseException):
                await self.next
        elif self.next is not None and not self.next.cancelled():
            self.next.exception()  # retrieved: an ended side iterator is not an error to log
        if self.side is not None and hasattr(self.side, "aclose"):
            with contextlib.suppress(BaseException):
                await self.side.aclose()


def _cut(batch: ChangeBatch, rows: int) -> tuple[ChangeBatch, ChangeBatch | None]:
    """The first ``rows`` rows of a keyed batch, and the rest (None: nothing is left)."""
    if batch.num_rows <= rows:
        return batch, None
    data = batch.data
    return (
        ChangeBatch(batch.table, data.slice(0, rows), batch.key, batch.meta),
        ChangeBatch(batch.table, data.slice(rows), batch.key, batch.meta),
    )


def _sized(rows: int, took: float, current: int) -> int:
    """Rows for the next slice: :data:`SIDE_SLICE_SECONDS` at the rate of the last one."""
    if not rows or took <= 0:
        return current
    low, high = SIDE_SLICE_ROWS
    return max(low, min(high, int(rows / took * SIDE_SLICE_SECONDS)))


async def _cancel(task: asyncio.Task[None]) -> None:
    await cancel_and_wait(task)  # (a reader that lost a cancellation is cancelled again)


def _rows(batches: list[ChangeBatch]) -> int:
    return sum(b.num_rows for b in batches)


class _Queue(asyncio.Queue[object]):
    """The reader's queue, whose next item the applier may look at before taking it."""

    def peek(self) -> object:
        return self._queue[0]  # type: ignore[attr-defined]  # (asyncio.Queue's own deque)


def _same_shape(held: list[ChangeBatch], item: object) -> bool:
    """Whether ``item`` is a batch whose table's held batches all have its schema, field
    metadata included (a Mongo field's ``bson_type``): a group grows past ``max_rows`` only
    by such batches, which join without conversion (batches of one table whose columns
    differ, e.g. documents with other fields, join as before)."""
    if not isinstance(item, ChangeBatch):
        return False
    schema = item.data.schema
    return all(
        b.data.schema.equals(schema, check_metadata=True) for b in held if b.table == item.table
    )


def _through_boundary(
    batches: list[ChangeBatch],
) -> tuple[list[ChangeBatch], list[ChangeBatch]]:
    """Split after the last batch that carries a resume position: (committable, held)."""
    for i in range(len(batches) - 1, -1, -1):
        if resume_position(batches[i]) is not None:
            return batches[: i + 1], batches[i + 1 :]
    return [], batches


async def process(
    pipeline: Pipeline,
    group: list[ChangeBatch],
    position: str | None,
    target: Target | None = None,
) -> BatchReport:
    """``pipeline.process`` within ``batch.timeout`` (:func:`.inflight.deadline`). ``target``:
    the lane's (:mod:`.beside`)."""
    return await deadline(pipeline, pipeline.process(group, position, target=target), group)


async def ensure_backfilled(
    pipeline: Pipeline, progress: Progress | None = None, stop: asyncio.Event | None = None
) -> tuple[str, int]:
    """The checkpoint to stream from, running the initial backfill first when there is none
    (and a resync's sweeps after it: :mod:`.resync`); and the number of rows that backfill
    copied."""
    resyncing = await resync.resume(pipeline)
    checkpoint = await pipeline.checkpoint()
    copied = 0
    if checkpoint is None:
        log.info("%s: no checkpoint yet: backfilling first", pipeline.name)
        copied = await backfill(pipeline, progress=progress, stop=stop)
        checkpoint = await pipeline.checkpoint()
    else:  # tables the stream did not capture are copied again (their requests)
        await captured.catch_up(pipeline)
    if checkpoint is None:
        raise RuntimeError(f"{pipeline.name}: backfill did not leave a checkpoint")
    if resyncing:  # copied again after lost history or a reset: what the source deleted goes
        await resync.sweep(pipeline)
    return checkpoint, copied


async def carry_out_requests(
    pipeline: Pipeline, progress: Progress | None = None, stop: asyncio.Event | None = None
) -> int:
    """Carry out the pipeline's open re-snapshot requests of tables it captures, here (no
    daemon runs it: a start's :func:`captured.catch_up`, a ``resnapshot`` a crash left
    ``running``); the rows copied."""
    ops = TableOps(pipeline)
    copied = 0
    for request in pipeline.state.table_requests(pipeline.name):
        if request.kind == RESNAPSHOT and pipeline.captures(request.table):
            copied += await ops.carry_out(request.id, progress, stop)
    return copied


async def sync_once(
    pipeline: Pipeline, progress: Progress | None = None, stop: asyncio.Event | None = None
) -> tuple[int, int]:
    """Backfill if needed, then apply everything committed before now.

    Returns (rows backfilled, changes applied)."""
    start, copied = await ensure_backfilled(pipeline, progress, stop)
    copied += await carry_out_requests(pipeline, progress, stop)
    until = await pipeline.source.current_position()
    if until == start:
        return copied, 0  # nothing new: an empty run stays cheap
    # the first group's imports load while the source starts its stream and reads ahead,
    # instead of holding up that group's apply (the drain's slowest stage)
    warm_up(FIRST_GROUP_IMPORTS)
    pipeline.drained = False
    applied = await stream(pipeline, start, until, stop)
    if stop is not None and stop.is_set() and not pipeline.drained:
        raise Interrupted(
            f"{pipeline.name}: sync interrupted after {applied} changes",
            hint="what was applied is checkpointed; run it again to continue",
        )
    # asked for by the drain (a collection another was renamed over)
    copied += await carry_out_requests(pipeline, stop=stop)
    return copied, applied
