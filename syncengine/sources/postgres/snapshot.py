"""Consistent, parallel, resumable snapshots (backfill).

Fresh snapshot, no slot yet: the slot is created with an exported snapshot on a replication
connection that stays open (and idle) until every chunk is read. Up to ``parallel`` workers
each open one ``REPEATABLE READ`` transaction, ``SET TRANSACTION SNAPSHOT`` to it, and read
their chunks through COPY. The rows are exactly the state at the slot's consistent point, so
streaming from that point loses and repeats nothing. A chunk is read in pieces of
``batch.max_rows`` rows, and a worker hands a parsed piece on only when fewer than
``2 × (parallel + 1)`` pieces are held (queued or being applied; its COPY, and so the server,
waits meanwhile), so at most ``3 × parallel + 2`` pieces exist (one more per worker, parsed and
waiting): memory is bounded by the batch size, whatever the chunk or table size. The
reconciling path below holds up to ``parallel`` whole chunks: a chunk's rows get their
positions only once its window closed.

Resumed snapshot (chunks left from an interrupted run, even when every one is done: the
process died before the backfill's checkpoint; the exported snapshot died with its
connection), or fresh snapshot while the slot already exists (no snapshot can be exported
from an existing slot): the remaining chunks are reconciled with watermarks. For each group
of ``parallel`` chunks: write a low watermark (``pg_logical_emit_message``), settle a
visibility horizon L, read the chunks (each in one ``REPEATABLE READ`` transaction that also
records its snapshot), write a high watermark. The rows do not carry the snapshot position
the stream restarts from but the position up to which they contain every change of their key
(L, raised by the changes between the watermarks that the read saw), so the target's position
fence drops the replay of those changes instead of letting an older change overwrite a newer
row. See :mod:`.watermarks`. The deletes made since the snapshot position are sent too,
at their own positions (before the first group, then after each group's rows), so a key deleted
before its chunk was read is not brought back by the replay's older changes (ghost rows, see
:mod:`.deletes`); on every start, for every keyed table of the snapshot, including tables whose
chunks an earlier process finished (it may have died before their last deletes). A chunk
whose table was truncated between the watermarks is left to the replay; tables without a key
restart their chunks on this path (ctids are not stable).

Every chunk (and the chunk plan) reads only the rows some mapping keeps where that can be said
in Postgres, ANDed with ``backfill --where`` (see :mod:`.pushdown`).

Progress: a chunk is marked ``done`` in the state store when the consumer asks for the batch
after its last one, i.e. after the target committed it. The snapshot position and the name of
the exported snapshot are kept as the checkpoint ``snapshot:<slot>`` in the state store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, cast

import psycopg
import pyarrow as pa
from psycopg import sql

from syncengine.changes import AT_RESUME, ChangeBatch, lsn_to_pos, pos_to_lsn
from syncengine.errors import UsageError
from syncengine.sources.postgres import admin
from syncengine.sources.postgres.chunks import (
    TableShape,
    chunk_query,
    csv_to_text_columns,
    plan,
    read_batch,
    read_copy,
    stream_copy,
    table_shape,
    truncate_batch,
)
from syncengine.sources.postgres.deletes import DETAIL, delete_publication, deletes_since
from syncengine.sources.postgres.passthrough import (
    CopySink,
    confirmed,
    copied_batch,
    pipe_chunk,
)
from syncengine.sources.postgres.pgerrors import map_error
from syncengine.sources.postgres.pushdown import snapshot_conditions
from syncengine.sources.postgres.watermarks import (
    ALL_KEYS,
    ReadSnapshot,
    VisibilityHorizon,
    WatermarkReader,
    Window,
    row_positions,
)
from syncengine.state.base import Chunk

if TYPE_CHECKING:
    from syncengine.sources.postgres.context import SourceContext

log = logging.getLogger("syncengine.sources.postgres")

_DONE = object()


@dataclass(frozen=True)
class _ChunkRead:
    """A worker's last word on a decoded chunk: all its pieces were handed on (``rows``)."""

    rows: int


#: per table, the condition its chunks are read with (see :mod:`.pushdown`)
Wheres = dict[str, str | None]
#: the lowest position: chunk rows carrying it fence nothing
_NOWHERE = lsn_to_pos(0)


def snapshot_stream(source: SourceContext) -> str:
    return f"snapshot:{source.slot}"


def stored_position(source: SourceContext) -> str | None:
    checkpoint = source.state.get_checkpoint(source.pipeline, snapshot_stream(source))
    return checkpoint.position if checkpoint else None


class Snapshotter:
    def __init__(self, source: SourceContext, sink: CopySink | None = None) -> None:
        self.source = source
        self.state = source.state
        self.pipeline = source.pipeline
        #: where exported-snapshot chunks of the tables it takes go as binary COPY
        self.sink = sink
        self._passing: frozenset[str] = frozenset()
        self._unpushed: set[str] = set()

    async def run(
        self, tables: list[str], where: str | None, parallel: int
    ) -> AsyncIterator[ChangeBatch]:
        source = self.source
        conn = await source.catalog()
        keys = await admin.table_keys(conn, tables)
        source.keys.update(keys)
        shapes = {t: await table_shape(conn, t, keys.get(t, ())) for t in tables}
        # the mappings' filters and ``where``: what every chunk of a table is read with
        wheres = await snapshot_conditions(conn, tables, source.row_filters, where)
        # a filter left to the mapping must see every row: such tables are decoded
        self._unpushed = {t for t in tables if source.row_filters(t) and wheres[t] == where}
        existing = [c for t in tables for c in self.state.get_chunks(self.pipeline, t)]
        # Chunks left over are an unfinished snapshot, even when every one is done (the
        # process died before the backfill's checkpoint): starting over would stream from a
        # later position and lose the deletes since its chunks were read (ghost rows).
        # A finished backfill's chunks are cleared by the runtime before the next one.
        resuming = bool(existing)
        checkpoint = self.state.get_checkpoint(self.pipeline, snapshot_stream(source))
        if resuming and checkpoint is not None:
            position = checkpoint.position
            # An exported snapshot's position is exact; one taken on an existing slot was
            # not settled, so it vouches for nothing (see VisibilityHorizon).
            floor = position if checkpoint.details.get("snapshot") else _NOWHERE
            existing = await confirmed(self.state, self.pipeline, self.sink, existing)
            pending = [c for c in existing if c.status != "done"]
            # a table the interrupted run never planned (it was limited to other tables, or
            # the config gained this one): planned now, read like the rest since nothing of
            # it was copied; skipping it would leave its rows out for good
            unplanned = [t for t in tables if not any(c.table == t for c in existing)]
            if unplanned:
                log.info("%s: planning %s, not started", self.pipeline, ", ".join(unplanned))
                added: list[Chunk] = []
                for table in unplanned:
                    chunk_rows = source.config.snapshot_chunk_rows
                    added.extend(await plan(conn, shapes[table], chunk_rows, wheres[table]))
                self.state.put_chunks(self.pipeline, added)
                pending.extend(added)
            log.info("%s: resuming snapshot, %d chunks left", self.pipeline, len(pending))
            # older than the snapshot position only if recorded so (see .deletes)
            via = checkpoint.details.get(DETAIL) or source.publication
            async for batch in self._reconcile(
                shapes, pending, wheres, position, floor, parallel, via
            ):
                yield batch
            return
        for table in tables:
            self.state.clear_chunks(self.pipeline, table)
        if self.sink is not None:
            await self.sink.forget(tables)
        if source.config.mode == "cdc" and not await admin.usable_slot(conn, source.slot):
            async for batch in self._exported(shapes, wheres, parallel):
                yield batch
            return
        if source.config.mode == "cdc":
            position = lsn_to_pos(await admin.current_lsn(conn))
        else:  # incremental: rows changed while we read are polled again afterwards
            position = await source.current_position()
        self._remember(position, None)
        planned: list[Chunk] = []
        for shape in shapes.values():
            chunk_rows = source.config.snapshot_chunk_rows
            planned.extend(await plan(conn, shape, chunk_rows, wheres[shape.name]))
        self.state.put_chunks(self.pipeline, planned)
        via = delete_publication(source)
        async for batch in self._reconcile(
            shapes, planned, wheres, position, _NOWHERE, parallel, via
        ):
            yield batch

    def _remember(self, position: str, snapshot: str | None) -> None:
        # open() made the delete publication, and it committed before this position was taken
        details = {"snapshot": snapshot, DETAIL: delete_publication(self.source)}
        self.state.put_checkpoint(self.pipeline, snapshot_stream(self.source), position, details)

    # -- exported snapshot -----------------------------------------------------------------

    async def _exported(
        self, shapes: dict[str, TableShape], wheres: Wheres, parallel: int
    ) -> AsyncIterator[ChangeBatch]:
        source = self.source
        repl = await source.connect(replication=True)
        workers: list[asyncio.Task[None]] = []
        try:
            try:
                lsn, name = await admin.create_slot(repl, source.slot, export=True)
            except psycopg.Error as exc:
                raise map_error(exc, f"creating slot {source.slot}") from exc
            assert name is not None
            position = lsn_to_pos(lsn)
            self._remember(position, name)
            planner = await self._importing(name)
            try:
                planned: list[Chunk] = []
                for shape in shapes.values():
                    chunk_rows = source.config.snapshot_chunk_rows
                    planned.extend(await plan(planner, shape, chunk_rows, wheres[shape.name]))
            finally:
                await planner.close()
            self.state.put_chunks(self.pipeline, planned)
            for batch in _emptied(shapes, {c.table for c in planned}, position):
                yield batch
            self._passing = self._pass_through(shapes)
            todo: asyncio.Queue[Chunk] = asyncio.Queue()
            for chunk in planned:
                todo.put_nowait(chunk)
            results: asyncio.Queue[object] = asyncio.Queue()
            count = max(1, min(parallel, len(planned)))
            # pieces (or passed-through chunks) held at once: two per worker and two being
            # applied (a worker that is ahead waits here, its COPY paused, instead of reading
            # into the queue)
            slots = asyncio.Semaphore(2 * (count + 1))
            workers = [
                asyncio.create_task(self._worker(name, shapes, todo, results, wheres, slots))
                for _ in range(count)
            ]
            finished = 0
            while finished < count:
                item = await results.get()
                if item is _DONE:
                    finished += 1
                    continue
                if isinstance(item, BaseException):
                    raise item
                chunk, text = cast(tuple[Chunk, pa.Table | int | _ChunkRead], item)
                del item
                if isinstance(text, int):  # copied through, committed with its done-mark
                    done = replace(chunk, status="done", rows=text)
                    self.state.put_chunks(self.pipeline, [done])
                    slots.release()
                    yield copied_batch(shapes[chunk.table], chunk, text, position)
                    continue
                if isinstance(text, _ChunkRead):  # its pieces were all applied (taken in order)
                    done = replace(chunk, status="done", rows=text.rows)
                    self.state.put_chunks(self.pipeline, [done])
                    continue
                # rows at the slot's consistent point, where the stream starts: no change at
                # or before it can follow, so they need no per-key fence (conflicts/fence.py)
                emitted = self._emit(
                    shapes[chunk.table], chunk, text, position, at_resume=True, done=False
                )
                async for batch in emitted:
                    yield batch
                del text
                slots.release()
        finally:
            for task in workers:
                task.cancel()
            for task in workers:
                with contextlib.suppress(BaseException):
                    await task
            await repl.close()

    def _pass_through(self, shapes: dict[str, TableShape]) -> frozenset[str]:
        """The tables whose chunks go to the sink: keyed tables (a keyless table's rows need
        the target's multiset apply) whose mapping filter, if any, is in the chunk query, and
        that the sink takes."""
        if self.sink is None:
            return frozenset()
        sink = self.sink
        passing = frozenset(
            t
            for t, shape in shapes.items()
            if shape.key and t not in self._unpushed and sink.takes(shape)
        )
        for table in sorted(shapes):
            how = "binary COPY passthrough" if table in passing else "decoded (CSV → Arrow)"
            log.info("%s: snapshot chunks of %s: %s", self.pipeline, table, how)
        return passing

    async def _importing(self, snapshot: str) -> psycopg.AsyncConnection:
        conn = await self.source.connect()
        await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        await conn.execute(sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot)))
        return conn

    async def _worker(
        self,
        snapshot: str,
        shapes: dict[str, TableShape],
        todo: asyncio.Queue[Chunk],
        results: asyncio.Queue[object],
        wheres: Wheres,
        slots: asyncio.Semaphore,
    ) -> None:
        """Read chunks until none is left, each piece (or passed-through chunk) once ``slots``
        has room for it (the consumer frees the slot when it is applied)."""
        try:
            conn = await self._importing(snapshot)
            try:
                while True:
                    await slots.acquire()
                    if todo.empty():
                        slots.release()
                        break
                    chunk = todo.get_nowait()
                    shape = shapes[chunk.table]
                    if chunk.table in self._passing:
                        assert self.sink is not None
                        sink, condition = self.sink, wheres[chunk.table]
                        copied = await pipe_chunk(conn, sink, shape, chunk, condition)
                        if copied is not None:
                            results.put_nowait((chunk, copied))
                            continue
                    # the slot taken above holds the first piece, each further one takes its own
                    first = True

                    async def take(text: pa.Table, chunk: Chunk = chunk) -> None:
                        nonlocal first
                        if not first:
                            await slots.acquire()
                        first = False
                        results.put_nowait((chunk, text))

                    query = chunk_query(shape, chunk, wheres[chunk.table])
                    step = self.source.batch.max_rows
                    rows = await stream_copy(conn, query, shape.columns, step, take)
                    results.put_nowait((chunk, _ChunkRead(rows)))
            finally:
                await conn.close()
        except psycopg.Error as exc:
            await results.put(map_error(exc, "reading a snapshot chunk"))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, raised there
            await results.put(exc)
        await results.put(_DONE)

    async def _emit(
        self,
        shape: TableShape,
        chunk: Chunk,
        text: pa.Table,
        position: str | pa.Array,
        at_resume: bool = False,
        done: bool = True,
    ) -> AsyncIterator[ChangeBatch]:
        """Yield the chunk (or a piece of it: ``done=False``) in ``max_rows`` slices; mark it
        done once the consumer moved on. ``position``: of every row, or one per row;
        ``at_resume``: it is where the stream resumes (batch meta ``at_resume``)."""
        step = self.source.batch.max_rows
        meta: dict[str, object] = {"snapshot": True, "chunk": chunk.chunk}
        if at_resume:
            meta[AT_RESUME] = True
        for offset in range(0, max(text.num_rows, 1), step):
            piece = text.slice(offset, step)
            at = position if isinstance(position, str) else position.slice(offset, step)
            # converted in a thread: the stream applies groups meanwhile (a live snapshot)
            yield await asyncio.to_thread(read_batch, shape, piece, at, meta)
        if done:
            finished = replace(chunk, status="done", rows=text.num_rows)
            self.state.put_chunks(self.pipeline, [finished])

    async def _keyless_exact(
        self, shapes: dict[str, TableShape], chunks: list[Chunk], wheres: Wheres
    ) -> AsyncIterator[ChangeBatch]:
        """Keyless tables on the reconciling path. Their rows cannot be matched to the changes
        the stream replays, so they are read whole in the exported snapshot of a temporary
        slot, which contains exactly the transactions committed before its consistent point
        C: the copy starts with a truncate that sets the table's fence to C, so the replay
        drops their changes before C and applies the later ones (docs/postgres-source.md,
        *Keyless tables*)."""
        source = self.source
        repl = await source.connect(replication=True)
        try:
            try:
                lsn, name = await admin.create_slot(
                    repl, f"{source.slot}_copy", export=True, temporary=True
                )
            except psycopg.Error as exc:
                raise map_error(exc, "creating a temporary slot for keyless tables") from exc
            assert name is not None
            position = lsn_to_pos(lsn)
            tables = {c.table for c in chunks}
            for batch in _emptied(shapes, tables, position, fence=True):
                yield batch
            conn = await self._importing(name)
            try:
                for chunk in sorted(chunks, key=lambda c: (c.table, c.chunk)):
                    shape = shapes[chunk.table]
                    data = await read_copy(conn, chunk_query(shape, chunk, wheres.get(chunk.table)))
                    text = csv_to_text_columns(data, shape.columns)
                    del data
                    async for batch in self._emit(shape, chunk, text, position):
                        yield batch
            except psycopg.Error as exc:
                raise map_error(exc, "reading a keyless table") from exc
            finally:
                await conn.close()
        finally:
            await repl.close()

    def keyless_live(
        self, shape: TableShape, chunks: list[Chunk], wheres: Wheres
    ) -> AsyncIterator[ChangeBatch]:
        """A keyless table copied whole while the stream runs, its changes held meanwhile by
        the caller (:mod:`.tablesnap`): every chunk, done or not, at one new exact position."""
        return self._keyless_exact({shape.name: shape}, chunks, wheres)

    # -- watermark reconciliation ----------------------------------------------------------

    def reconcile_live(
        self,
        shape: TableShape,
        pending: list[Chunk],
        where: str | None,
        position: str,
        parallel: int,
        temporary: str,
    ) -> AsyncIterator[ChangeBatch]:
        """One keyed table's chunks reconciled while the stream runs (:mod:`.tablesnap`)."""
        wheres = {shape.name: where}
        shapes = {shape.name: shape}
        return self._reconcile(
            shapes, pending, wheres, position, _NOWHERE, parallel, "", live=temporary
        )

    async def _reconcile(
        self,
        shapes: dict[str, TableShape],
        pending: list[Chunk],
        wheres: Wheres,
        position: str,
        floor: str,
        parallel: int,
        deletes_via: str,
        live: str | None = None,
    ) -> AsyncIterator[ChangeBatch]:
        """Read ``parallel`` chunks at a time inside one low/high watermark window, and send
        the deletes made since ``position`` (ghost rows, see :mod:`.deletes`).

        ``position``: where the stream restarts after the snapshot; ``floor``: a position
        known to be visible to every read (the chunk rows' fallback, see VisibilityHorizon);
        ``deletes_via``: the publication to read the deletes since ``position`` through.
        ``live``: the stream is running (it holds the slot and applies every change after its
        own checkpoint): the windows are read through a temporary slot of that name and no
        deletes since ``position`` are read (the stream carries them), see :mod:`.tablesnap`.
        """
        source = self.source
        #: keyed tables of this snapshot, also those whose chunks are all done: an earlier
        #: process may have committed a table's last chunk and died before the deletes made
        #: while it was read (ghost rows in the replay)
        deleting = {t for t, shape in shapes.items() if shape.key}
        if source.config.mode != "cdc":
            deleting = set()  # incremental: no slot (rows changed meanwhile are polled again)
        keyless = {c.table for c in pending if not shapes[c.table].key}
        if keyless and live is not None:
            # a keyless copy replaces the table at one position (truncate first): changes the
            # running stream applied after it would be wiped and never replayed
            raise UsageError(
                f"{', '.join(sorted(keyless))} has no primary key or replica identity: it cannot "
                "be re-snapshotted while the pipeline streams",
                hint="stop the daemon and run syncengine backfill --table for it",
            )
        if keyless:  # ctids move: such tables are read again, whole, at one exact position
            pending = [c for c in pending if c.table not in keyless]
            chunks = [c for t in sorted(keyless) for c in self.state.get_chunks(self.pipeline, t)]
            async for batch in self._keyless_exact(shapes, chunks, wheres):
                yield batch
        if not pending and not deleting:
            return
        pending.sort(key=lambda c: (c.table, c.chunk))
        width = max(1, parallel)
        conns = [await source.connect() for _ in range(min(width, max(len(pending), 1)))]
        reader: WatermarkReader | None = None
        horizon: VisibilityHorizon | None = None
        threads = live is None  # Arrow's CSV pool on every core only without a stream beside

        async def read(
            conn: psycopg.AsyncConnection, chunk: Chunk
        ) -> tuple[pa.Table, ReadSnapshot | None]:
            shape = shapes[chunk.table]
            query = chunk_query(shape, chunk, wheres.get(chunk.table))
            # parsed in a thread: a chunk's CSV parsed on the event loop held a daemon's
            # stream groups back while it added a table (pg_add_table); beside a running
            # stream on one core, so the stream's groups keep the other
            if reader is None:
                data = await read_copy(conn, query)
                return await asyncio.to_thread(
                    csv_to_text_columns, data, shape.columns, threads
                ), None
            # One snapshot for the rows and the record of what they contain.
            await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            row = await (await conn.execute("SELECT pg_current_snapshot()::text")).fetchone()
            assert row is not None
            data = await read_copy(conn, query)
            await conn.execute("COMMIT")
            text = await asyncio.to_thread(csv_to_text_columns, data, shape.columns, threads)
            return text, ReadSnapshot.parse(row[0])

        try:
            if source.config.mode == "cdc":
                # The windows only need what comes after this: reading from the snapshot
                # position would first ship and decode all WAL retained since.
                start = await admin.current_lsn(conns[0])
                if deleting and live is None:  # ghost rows: the deletes since the snapshot
                    # position, up to there
                    since = pos_to_lsn(position.split(".")[0])
                    found = deletes_since(source, deletes_via, since, start, deleting)
                    async for batch in found:
                        yield batch
                if pending:  # no windows without chunks to read
                    reader = WatermarkReader(source, start, temporary=live)
                    await reader.open()
                    horizon = VisibilityHorizon(floor)
            for first in range(0, len(pending), width):
                group = pending[first : first + width]
                marker = uuid.uuid4().hex
                at, exact = position, False  # incremental: rows changed meanwhile are polled again
                if reader is not None and horizon is not None:
                    await admin.emit_message(conns[0], admin.WATERMARK_PREFIX, f"low:{marker}")
                    at, exact = await horizon.settle(conns[0])
                reads = await asyncio.gather(
                    *(read(c, k) for c, k in zip(conns[: len(group)], group, strict=True))
                )
                changed: Window = {}
                if reader is not None:
                    await admin.emit_message(conns[0], admin.WATERMARK_PREFIX, f"high:{marker}")
                    changed = await reader.changed_keys(marker)
                for chunk, (text, seen) in zip(group, reads, strict=True):
                    shape = shapes[chunk.table]
                    keys = changed.get(chunk.table, {})
                    if ALL_KEYS in keys:  # truncated inside the window: the replay rebuilds it
                        text = text.slice(0, 0)
                    positions = row_positions(text, shape, keys, at, seen if exact else None)
                    async for batch in self._emit(shape, chunk, text, positions):
                        yield batch
                # not held while the next group is read: at most ``width`` chunks at a time
                del reads, text, positions
                if reader is not None:  # after the rows: a delete they did not see removes them
                    for batch in reader.deletes.take(deleting):
                        yield batch
        except psycopg.Error as exc:
            raise map_error(exc, "reconciling snapshot chunks") from exc
        finally:
            if reader is not None:
                await reader.close()
            for conn in conns:
                await conn.close()


def _emptied(
    shapes: dict[str, TableShape], tables: set[str], position: str, fence: bool = False
) -> list[ChangeBatch]:
    """A truncate for each keyless table among ``tables``, sent before any of their rows: a
    keyless table's rows cannot be told apart, so its copy replaces the target's rows instead
    of merging with them, and a re-run or restarted snapshot appends nothing twice
    (docs/postgres-source.md, *Keyless tables*). ``fence``: the rows are read at ``position``
    while the stream replays from an earlier one, so the table's fence moves there."""
    meta: dict[str, object] = {"snapshot": True}
    if fence:
        meta["fence"] = position
    return [truncate_batch(shapes[t], position, meta) for t in sorted(tables) if not shapes[t].key]


async def scan(
    source: SourceContext, table: str, columns: Sequence[str] | None = None
) -> AsyncIterator[ChangeBatch]:
    """The table as it is now, as ``r`` batches, with no slot and no chunk bookkeeping; only
    ``columns`` and the key when given (a table sweep reads the key alone). The CSV is parsed
    and converted in a thread: a daemon's stream goes on while a million rows are read."""
    conn = await source.connect()
    try:
        keys = await admin.table_keys(conn, [table])
        shape = _narrowed(await table_shape(conn, table, keys.get(table, ())), columns)
        position = lsn_to_pos(await admin.current_lsn(conn))
        chunk = Chunk(table, 0, None, None)
        data = await read_copy(conn, chunk_query(shape, chunk, None))
    except psycopg.Error as exc:
        raise map_error(exc, f"scanning {table}") from exc
    finally:
        await conn.close()
    # on one core: a sweep reads a whole table's keys beside the daemon's stream
    text = await asyncio.to_thread(csv_to_text_columns, data, shape.columns, False)
    del data
    step = source.batch.max_rows
    for offset in range(0, max(text.num_rows, 1), step):
        yield await asyncio.to_thread(read_batch, shape, text.slice(offset, step), position, {})


def _narrowed(shape: TableShape, columns: Sequence[str] | None) -> TableShape:
    """``shape`` with only ``columns`` and the key, in table order (all when None)."""
    if columns is None:
        return shape
    wanted = set(columns) | set(shape.key)
    kept = [(c, t) for c, t in zip(shape.columns, shape.types, strict=True) if c in wanted]
    return replace(shape, columns=tuple(c for c, _ in kept), types=tuple(t for _, t in kept))
