"""A stream workflow's initial snapshot, its chunks copied on any worker (no Temporal in here).

The embedded backfill reads every chunk inside one exported snapshot, which lives only as long
as the connection of the worker that exported it. Spread over workers, each chunk is instead
read at its own moment and reconciled by watermarks, the way a snapshot resumed after a crash
already is (:mod:`syncengine.sources.postgres.watermarks`):

1. :func:`plan` (one activity) creates the pipeline's slot without a snapshot, or finds the one
   an earlier attempt made; its confirmed position S is where the stream will start. It plans
   every table's chunks and creates the target tables (an empty batch per table), so that chunks
   applied at once on several workers never race to create one. No checkpoint is written: a
   target without one still means "not backfilled", whatever happens to the workflow.
2. :func:`copy_chunk` (one activity per chunk, on any worker) reads its chunk inside a low/high
   watermark window decoded through a temporary slot of its own, after settling a visibility
   horizon. Each row carries the position up to which it contains every change of its key, and
   is applied with that position recorded in the target's shadow (the fence).
3. The stream activity starts after the last chunk: it commits S as the checkpoint (nothing
   else is applied before it) and streams from S. Every change after S is replayed; the fence
   drops those at or before a row's recorded position and applies the later ones, so the
   target ends exact although no two chunks were read at the same moment. Nothing is
   streamed while chunks are copied, so an unchanged TOASTed value the stream leaves unsent
   always finds its row (as in the embedded backfill).

A chunk's attempt claims a fence of its own (:func:`fence_name`) and every transaction it
commits checks it: a worker paused mid-chunk past its heartbeat timeout, whose chunk was copied
again elsewhere, has its late commit refused instead of writing rows older than the stream's
(rows of a snapshot are never dropped by the fence). A chunk copied twice (its worker died
after its last commit) is only written again, at newer positions, before the stream starts.

Only what the reconciliation covers is spread: a Postgres source in ``cdc`` mode, tables with a
key, a Postgres target (it keeps the fence and the epochs). Anything else is backfilled by the
first stream attempt on one worker, as before (:func:`refusal` says why).
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

import psycopg
import pyarrow as pa

from syncengine.changes import lsn_to_pos
from syncengine.cluster.chunkcopy import plan_tables, tasks_of
from syncengine.cluster.tasks import ChunkTask, SpreadPlan
from syncengine.errors import Fenced, UsageError
from syncengine.runtime.pipeline import Pipeline
from syncengine.runtime.runner import process
from syncengine.sources.postgres import admin
from syncengine.sources.postgres.chunks import read_batch, table_shape
from syncengine.sources.postgres.pgerrors import map_error
from syncengine.sources.postgres.pushdown import snapshot_conditions
from syncengine.sources.postgres.snapshot import Snapshotter
from syncengine.sources.postgres.source import PostgresSource
from syncengine.state.base import Chunk
from syncengine.targets.postgres.target import PostgresTarget

if TYPE_CHECKING:
    from syncengine.config.models import PipelineConfig
    from syncengine.state.protocols import StateStore

log = logging.getLogger("syncengine.cluster")

#: slot names are at most 63 characters; a chunk's temporary slot adds ``_s`` and 8 hex
_SLOT_PREFIX = 53


def fence_name(pipeline: str, table: str, chunk: int) -> str:
    """The fence one snapshot chunk's attempts claim (apart from the pipeline's own and from
    the cluster backfill's chunk fences)."""
    return f"{pipeline}:snapshot:{table}:{chunk}"


def spread_namespace(pipeline: str) -> str:
    """Where a worker's snapshotter notes the chunks it copies (read by nobody: the workflow
    knows which chunks are done)."""
    return f"{pipeline}/spread"


def refusal(pipeline: Pipeline) -> str | None:
    """Why the pipeline's initial snapshot cannot be spread (None: it can)."""
    source = pipeline.source
    if not isinstance(source, PostgresSource) or source.config.mode != "cdc":
        return "its source is not postgres in cdc mode"
    if not isinstance(pipeline.target, PostgresTarget):
        return "its target is not postgres"
    if not pipeline.config.backfill.copy_rows:
        return "its backfill copies no rows"
    return None


async def plan(name: str, config: PipelineConfig, state: StateStore) -> SpreadPlan:
    """The slot's start position and every chunk to copy; ``SpreadPlan()`` (nothing to
    spread) when the target has a checkpoint already, or the pipeline cannot be spread: the
    stream attempt then streams, or backfills on its worker, as in embedded mode."""
    pipeline = Pipeline(name, config, state)
    try:
        why = refusal(pipeline)
        if why is not None:
            log.info("%s: initial snapshot on one worker: %s", name, why)
            return SpreadPlan()
        await pipeline.target.open()
        if await pipeline.checkpoint() is not None:
            return SpreadPlan()
        source = pipeline.source
        assert isinstance(source, PostgresSource)
        await source.open()  # its checks, and the publication before any slot
        tables = source.snapshot_tables(None)
        try:
            conn = await source.catalog()
            keys = await admin.table_keys(conn, tables)
            keyless = sorted(t for t in tables if not keys.get(t))
            if keyless:
                log.info(
                    "%s: initial snapshot on one worker: %s has no key (copied whole, at one "
                    "position)",
                    name, ", ".join(keyless),
                )  # fmt: skip
                return SpreadPlan()
            at = await _slot_start(source, conn)
            shapes = {t: await table_shape(conn, t, keys[t]) for t in tables}
            wheres = await snapshot_conditions(conn, tables, source.row_filters, None)
        except psycopg.Error as exc:
            raise map_error(exc, "planning the spread snapshot") from exc
        for shape in shapes.values():  # every target table exists before any chunk lands
            empty = pa.table({c: pa.array([], pa.string()) for c in shape.columns})
            meta = {"snapshot": True, "chunk": -1}  # an empty chunk: its table is created
            await process(pipeline, [read_batch(shape, empty, at, meta)], None)
        tasks = tasks_of(name, await plan_tables(source, shapes, wheres))
        log.info("%s: initial snapshot spread over workers: %d chunk(s)", name, len(tasks))
        return SpreadPlan(at, tasks)
    finally:
        await pipeline.close()


async def unmoved(source: object, at: str) -> bool:
    """Whether the pipeline's slot is still at ``at``, the position a spread snapshot was
    reconciled from: only then may the stream commit it as its first checkpoint. A slot moved
    on (the checkpoint was reset after the stream ran) means ``at`` is history; the first
    stream attempt then backfills as in embedded mode."""
    if not isinstance(source, PostgresSource):
        return False
    try:
        confirmed = await admin.confirmed_lsn(await source.catalog(), source.slot)
    except psycopg.Error as exc:
        raise map_error(exc, "reading the slot's position") from exc
    return confirmed is not None and lsn_to_pos(confirmed) == at


async def _slot_start(source: PostgresSource, conn: psycopg.AsyncConnection) -> str:
    """The position the stream starts from: the slot's confirmed one (an earlier attempt made
    it and nothing was acknowledged since), or a new slot's consistent point."""
    confirmed = None
    if await admin.slot_exists(conn, source.slot):
        confirmed = await admin.confirmed_lsn(conn, source.slot)
    if confirmed is None:
        repl = await source.connect(replication=True)
        try:
            confirmed, _ = await admin.create_slot(repl, source.slot, export=False)
        finally:
            await repl.close()
    return lsn_to_pos(confirmed)


async def copy_chunk(
    name: str, config: PipelineConfig, state: StateStore, task: ChunkTask, at: str, holder: str
) -> int:
    """Read one chunk reconciled by a watermark window and apply it with its rows' positions;
    returns rows applied. Every commit checks the chunk's fence, claimed first by ``holder``."""
    pipeline = Pipeline(name, config, state)
    try:
        source, target = pipeline.source, pipeline.target
        if not isinstance(source, PostgresSource) or not isinstance(target, PostgresTarget):
            raise UsageError(f"{name}: a spread snapshot needs a postgres source and target")
        await target.open()
        epoch = await target.claim_epoch(holder, fence_name(name, task.table, task.chunk))
        if await pipeline.checkpoint() is not None:
            # the stream started: this attempt was handed over (and paused) before the chunk
            # was copied by another, and its rows, never dropped by the fence, would land over
            # newer changes (a claim made between this check and the stream's first commit
            # is the window left)
            raise Fenced(
                f"{name}: snapshot chunk {task.chunk} of {task.table}: the stream has started; "
                "this late attempt copies nothing",
                hint="another worker copied the chunk; nothing to do",
            )
        log.info("%s: snapshot chunk %d of %s, fence epoch %d", name, task.chunk, task.table, epoch)
        try:
            conn = await source.catalog()
            keys = await admin.table_keys(conn, [task.table])
            source.keys.update(keys)
            shape = await table_shape(conn, task.table, keys.get(task.table, ()))
            wheres = await snapshot_conditions(conn, [task.table], source.row_filters, None)
        except psycopg.Error as exc:
            raise map_error(exc, f"reading the shape of {task.table}") from exc
        snapshotter = Snapshotter(source)
        snapshotter.pipeline = spread_namespace(name)
        chunk = Chunk(task.table, task.chunk, task.lower, task.upper)
        # a name of its own per attempt: a paused earlier attempt may still hold its slot
        temporary = f"{source.slot[:_SLOT_PREFIX]}_s{uuid.uuid4().hex[:8]}"
        batches = snapshotter.reconcile_live(shape, [chunk], wheres[task.table], at, 1, temporary)
        rows = 0
        try:
            async for batch in batches:
                report = await process(pipeline, [batch], None)
                rows += report.read
        finally:  # its reader and temporary slot closed on any exit, not when collected
            close = getattr(batches, "aclose", None)
            if close is not None:
                await close()
        state.clear_chunks(spread_namespace(name), task.table)
        return rows
    finally:
        await pipeline.close()
