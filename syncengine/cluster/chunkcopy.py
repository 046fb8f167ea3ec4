"""One pipeline's backfill chunks as a cluster worker copies them (no Temporal in here).

Cluster mode plans a backfill once and copies its chunks on any worker, each chunk on its own
(docs/cluster.md). Both halves reuse the embedded backfill's parts instead of copies of them:

* planning: the Postgres snapshot's chunk planner (:func:`syncengine.sources.postgres.chunks.plan`)
  over the same pushed-down row conditions (:mod:`syncengine.sources.postgres.pushdown`);
* copying: the binary COPY passthrough (:func:`~syncengine.sources.postgres.passthrough.pipe_chunk`
  into the target's :class:`~syncengine.passthrough.ChunkSink`), which commits the chunk's rows and
  its done-mark (``_syncengine.chunks`` in the target database) in one target transaction.

That transaction is what makes a chunk retried on another worker do nothing twice: a worker
killed before the commit leaves nothing (its transaction dies with its connection); one killed
after it leaves the rows *and* the mark, and the retry finds the mark and copies nothing. The
check before the copy is not a lock: should two attempts ever copy one chunk at once, the
second's rows hit the target table's key and the sink refuses them (nothing written), after
which the mark the first committed is found the same way.

This preview copies only what passes through (a Postgres source and target, identity mappings
under ``remote``, tables with a key: :mod:`syncengine.runtime.passthrough`); anything else is
refused when the job opens, with the reason. Each chunk is read in its own ``REPEATABLE READ``
transaction, at the time its activity runs: the copy is consistent per chunk, not across the
table, and no stream checkpoint is written (what a stream workflow will add, docs/cluster.md).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import psycopg

from syncengine.cluster.tasks import ChunkResult, ChunkTask
from syncengine.errors import FatalError, UsageError
from syncengine.runtime import passthrough
from syncengine.runtime.pipeline import Pipeline
from syncengine.sources.postgres import admin
from syncengine.sources.postgres.chunks import TableShape, plan, table_shape
from syncengine.sources.postgres.passthrough import CopySink, pipe_chunk
from syncengine.sources.postgres.pgerrors import map_error
from syncengine.sources.postgres.pushdown import snapshot_conditions
from syncengine.sources.postgres.source import PostgresSource
from syncengine.state.base import Chunk
from syncengine.targets.postgres import epochs
from syncengine.targets.postgres.passthrough import BinaryCopySink

if TYPE_CHECKING:
    from syncengine.config.models import PipelineConfig
    from syncengine.state.protocols import StateStore

log = logging.getLogger("syncengine.cluster")


class ChunkCopier:
    """A pipeline's tables, their chunk conditions and its target's chunk sink, opened once
    per worker and shared by the chunk activities it runs (each chunk uses its own source
    and target connections)."""

    def __init__(
        self,
        pipeline: Pipeline,
        source: PostgresSource,
        sink: CopySink,
        shapes: dict[str, TableShape],
        wheres: dict[str, str | None],
    ) -> None:
        self.pipeline = pipeline
        self.source = source
        self.sink = sink
        self.shapes = shapes
        self.wheres = wheres

    @classmethod
    async def open(cls, name: str, config: PipelineConfig, state: StateStore) -> ChunkCopier:
        """Build the pipeline's stages, create missing target tables (as the embedded
        backfill does) and check that every table can be copied chunk by chunk here.
        The source is not opened: no slot and no publication are made."""
        pipeline = Pipeline(name, config, state)
        try:
            return await cls._attach(pipeline)
        except BaseException:
            await pipeline.close()
            raise

    @classmethod
    async def _attach(cls, pipeline: Pipeline) -> ChunkCopier:
        source = pipeline.source
        if not isinstance(source, PostgresSource) or source.raw_chunk_format() is None:
            raise UsageError(
                f"{pipeline.name}: cluster backfill (preview) copies from a postgres source in "
                "cdc mode only",
                hint="run syncengine backfill for this pipeline",
            )
        await pipeline.target.open()
        tables = source.snapshot_tables(None)
        await passthrough.attach(pipeline, tables)
        sink, source.chunk_sink = source.chunk_sink, None
        if sink is None:
            raise UsageError(
                f"{pipeline.name}: cluster backfill (preview) copies into a postgres target only",
                hint="run syncengine backfill for this pipeline",
            )
        try:
            conn = await source.catalog()
            keys = await admin.table_keys(conn, tables)
            shapes = {t: await table_shape(conn, t, keys.get(t, ())) for t in tables}
            wheres = await snapshot_conditions(conn, tables, source.row_filters, None)
        except psycopg.Error as exc:
            await sink.close()
            raise map_error(exc, "reading the tables to back-fill") from exc
        refused = {
            t: why
            for t in sorted(tables)
            if (why := _refusal(pipeline, sink, shapes[t], wheres[t])) is not None
        }
        if refused:
            await sink.close()
            reasons = "; ".join(f"{t}: {why}" for t, why in refused.items())
            raise UsageError(
                f"{pipeline.name}: cluster backfill (preview) copies only tables that pass "
                f"through as binary COPY, not {reasons}",
                hint="run syncengine backfill for this pipeline",
            )
        return cls(pipeline, source, sink, shapes, wheres)

    async def close(self) -> None:
        await self.sink.close()
        await self.pipeline.close()

    async def plan(self) -> list[ChunkTask]:
        """Every table's chunks, planned on one ``REPEATABLE READ`` view of the source.
        Done-marks already in the target are kept: a workflow started again after a failure
        plans an unchanged table into the same bounds, and :meth:`copy` skips those chunks."""
        planned = await plan_tables(self.source, self.shapes, self.wheres)
        return tasks_of(self.pipeline.name, planned)

    async def copy(self, task: ChunkTask, holder: str = "local") -> ChunkResult:
        """Copy one chunk with its done-mark in one target transaction, or nothing when
        its mark is there already. The attempt (``holder``) first claims the chunk's fencing
        epoch: should a later attempt claim it before this one commits, this commit is
        refused (:class:`~syncengine.errors.Fenced`) and rolls back."""
        shape = self.shapes.get(task.table)
        if shape is None:
            raise UsageError(f"{self.pipeline.name}: {task.table} is not among its tables")
        fence = epochs.chunk_fence_name(task.pipeline, task.table, task.chunk)
        epoch = await self.sink.claim(fence, holder) if isinstance(self.sink, BinaryCopySink) else 0
        claimed = epochs.chunk_fence.set((fence, epoch) if epoch else None)
        try:
            return await self._copy(task, shape)
        finally:
            epochs.chunk_fence.reset(claimed)

    async def _copy(self, task: ChunkTask, shape: TableShape) -> ChunkResult:
        chunk = Chunk(task.table, task.chunk, task.lower, task.upper)
        marked = await self._marked(chunk)
        if marked is not None:
            log.info("%s: chunk %d of %s already committed", task.pipeline, task.chunk, task.table)
            return ChunkResult(task.table, task.chunk, marked, skipped=True)
        conn = await self.source.connect()
        try:
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            rows = await pipe_chunk(conn, self.sink, shape, chunk, self.wheres[task.table])
            await conn.execute("COMMIT")
        except psycopg.Error as exc:
            raise map_error(exc, f"reading chunk {task.chunk} of {task.table}") from exc
        finally:
            await conn.close()
        if rows is not None:
            return ChunkResult(task.table, task.chunk, rows)
        marked = await self._marked(chunk)  # another attempt committed it meanwhile
        if marked is not None:
            return ChunkResult(task.table, task.chunk, marked, skipped=True)
        raise FatalError(
            f"{task.pipeline}: the target refused chunk {task.chunk} of {task.table} "
            "(a constraint, or rows of it already in the target table)",
            hint="cluster backfill (preview) copies into empty target tables; "
            "run syncengine backfill for this pipeline",
        )

    async def _marked(self, chunk: Chunk) -> int | None:
        """Rows of the chunk's committed done-mark (same table, number and bounds), or None."""
        for done in await self.sink.done_chunks([chunk.table]):
            if (done.chunk, done.lower, done.upper) == (chunk.chunk, chunk.lower, chunk.upper):
                return done.rows
        return None


async def plan_tables(
    source: PostgresSource, shapes: dict[str, TableShape], wheres: dict[str, str | None]
) -> list[Chunk]:
    """Every table's chunk bounds, planned on one ``REPEATABLE READ`` view of the source."""
    conn = await source.connect()
    try:
        await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        planned: list[Chunk] = []
        for table, shape in sorted(shapes.items()):
            rows = source.config.snapshot_chunk_rows
            planned.extend(await plan(conn, shape, rows, wheres[table]))
        await conn.execute("COMMIT")
    except psycopg.Error as exc:
        raise map_error(exc, "planning chunks") from exc
    finally:
        await conn.close()
    return planned


def tasks_of(pipeline: str, chunks: list[Chunk]) -> list[ChunkTask]:
    """The chunks as activity descriptors (bounds only, never rows)."""
    return [ChunkTask(pipeline, c.table, c.chunk, c.lower, c.upper) for c in chunks]


def _refusal(
    pipeline: Pipeline, sink: CopySink, shape: TableShape, where: str | None
) -> str | None:
    """Why ``shape``'s chunks cannot pass through (None: they can), in the words of the
    passthrough's own checks (:mod:`syncengine.runtime.passthrough`, the sink's type check)."""
    mappings = [m for _, m in pipeline.mappings_for(shape.name)]
    reason = passthrough.refusal(pipeline.config, mappings)
    if reason is not None:
        return reason
    if not shape.key:
        return "it has no key"
    if pipeline.row_filters(shape.name) and where is None:
        return "its filter cannot be pushed into the chunk query"
    if sink.takes(shape):
        return None
    table = sink.tables.get(shape.name) if isinstance(sink, BinaryCopySink) else None
    return (table.refusal(shape) if table else None) or "the target table cannot take it"
