"""Per-table operations on a running pipeline: the requests left in the state store
(``syncengine resnapshot``, ``backfill --table`` while a daemon runs; ``checkpoints remove``,
:mod:`syncengine.runtime.forget`) carried out one at a time.

In the daemon, :meth:`TableOps.batches` feeds the stream's applier (:func:`runner.stream`'s
``side``): the applier takes one snapshot batch between two stream groups, commits it, and only
then asks for the next one, so a chunk is marked done after its rows committed and the stream
never waits for a chunk to be read. In the foreground (no daemon), :meth:`TableOps.carry_out`
applies the same batches directly. Either way the source reconciles the table's chunks with
the changes the stream applies (``table_snapshot``: :mod:`syncengine.sources.postgres.tablesnap`,
:mod:`syncengine.sources.mongo.tablesnap`), and a crash resumes the request at its first chunk
not done: a request stays ``running`` until its last chunk committed. A table without a key
is copied whole at one position while its changes are held (:mod:`syncengine.runtime.heldcopy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol, cast

import pyarrow as pa
import pyarrow.compute as pc

from syncengine.changes import LIVE_COPY, OP_READ, OP_UPDATE, REPLAYED, ChangeBatch
from syncengine.errors import FatalError, Interrupted, UsageError
from syncengine.runtime.forget import FORGET, Forget
from syncengine.runtime.heldcopy import HeldCopy
from syncengine.state.base import TableRequest, table_chunks

if TYPE_CHECKING:
    from syncengine.config.models import MappingConfig
    from syncengine.runtime.pipeline import Pipeline
    from syncengine.runtime.runner import Progress
    from syncengine.runtime.sweep import Found
    from syncengine.targets.base import Target

log = logging.getLogger("syncengine.tableops")

#: what ``resnapshot`` asks for
RESNAPSHOT = "resnapshot"
#: seconds between two looks at the state store for new requests
POLL_SECONDS = 1.0
#: chunks read at once beside a running stream: the copy goes at the pace of its applies
#: (a chunk is read while the one before is applied), so more readers only make each read a
#: burst on every core that holds the other tables' groups back
LIVE_READERS = 1


class TableSnapshots(Protocol):
    """A source that can copy one table while its stream runs."""

    def table_snapshot(
        self,
        table: str,
        where: str | None = None,
        parallel: int = 2,
        hold: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncIterator[ChangeBatch]:
        """``hold``: awaited before a keyless table's copy (:mod:`.heldcopy`)."""
        ...


def table_source(pipeline: Pipeline) -> TableSnapshots:
    source = pipeline.source
    if not hasattr(source, "table_snapshot"):
        raise UsageError(
            f"{pipeline.name}: a {pipeline.config.source.type} source cannot snapshot one table "
            "while the pipeline streams",
            hint="stop the pipeline and run syncengine backfill --table",
        )
    return cast(TableSnapshots, source)


class Sweep:
    """The deletes of keys the source no longer has (:mod:`syncengine.runtime.sweep`), found
    beside the stream and applied as a step the applier runs itself: it writes to the target,
    so never beside a stream group."""

    def __init__(self, pipeline: Pipeline, table: str, found: Found) -> None:
        self.pipeline = pipeline
        self.table = table
        self.found = found

    async def __call__(self) -> int:
        from syncengine.runtime.sweep import apply_deletes

        return await apply_deletes(self.pipeline, self.table, self.found)


#: what a table request hands the applier: rows to process, or a step to run
SideItem = ChangeBatch | Sweep | Forget


def as_updates(batch: ChangeBatch) -> ChangeBatch:
    """The snapshot's ``r`` rows as full-image updates (``u``). The fence never drops a snapshot
    row (a backfill's rows are never older than what the target holds), but a table snapshotted
    while the stream applies its changes can be: a row read at L must lose against the stream's
    change at a later position already applied, as an update would. The rows may also sit at or
    below the stored checkpoint, which fences only in-order changes: they are marked
    :data:`~syncengine.changes.REPLAYED` (fenced per key, not by the checkpoint), and
    :data:`~syncengine.changes.LIVE_COPY`: a row the stream's checkpoint has passed keeps no
    fence row (a copy left one per row, a million for a million-row table)."""
    ops = batch.data.column("_op")
    updated = pc.if_else(pc.equal(ops, OP_READ), pa.scalar(OP_UPDATE), ops)
    index = batch.data.schema.get_field_index("_op")
    data = batch.data.set_column(index, batch.data.schema.field(index), updated)
    return ChangeBatch(
        batch.table, data, batch.key, {**batch.meta, REPLAYED: True, LIVE_COPY: True}
    )


async def target_empty(target: Target, mappings: Sequence[MappingConfig]) -> bool | None:
    """Whether every target table of ``mappings`` (one source table's) is empty or missing
    (None: the target cannot tell). Asked when nothing of the table has been applied yet by
    a stream (before its capture begins) or before its copy starts: every row the target then
    gets comes from the stream or the copy, and a source delete reaches it through the
    stream, so no key can be left there that the source lacks and the sweep after the copy
    (two reads of the whole table's keys) is not needed: an added table's usual case. A
    target that fails to answer leaves it unknown too: the answer only spares the sweep, so
    it never stops a copy or a reload."""
    holds_rows = getattr(target, "holds_rows", None)
    if holds_rows is None or not mappings:
        return None
    try:
        for mapping in mappings:
            if await holds_rows(mapping.target_name):
                return False
    except Exception as exc:  # noqa: BLE001 - see above
        log.info(
            "could not tell whether %s is empty (%s): it will be swept", mapping.target_name, exc
        )
        return None
    return True


class TableOps:
    """The table requests of one pipeline (see the module docstring)."""

    def __init__(
        self, pipeline: Pipeline, parallel: int = LIVE_READERS, poll: float = POLL_SECONDS
    ) -> None:
        self.pipeline = pipeline
        self.state = pipeline.state
        self.parallel = parallel
        self.poll = poll

    def request(self, table: str, where: str | None) -> int:
        return self.state.request_table(self.pipeline.name, table, RESNAPSHOT, where)

    async def batches(self, stop: asyncio.Event) -> AsyncIterator[SideItem]:
        """Every open request's batches, forever (until ``stop``): the caller commits each
        batch before it asks for the next."""
        while not stop.is_set():
            # a table added by a reload is snapshotted once the running stream captures it
            requests = [
                r
                for r in self.state.table_requests(self.pipeline.name)
                if r.kind == FORGET or self.pipeline.captures(r.table)
            ]
            if not requests:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.poll)
                continue
            if requests[0].kind == FORGET:
                yield Forget(self.pipeline, requests[0])
                continue
            async for batch in self._one(requests[0]):
                yield batch

    async def carry_out(
        self, request_id: int, progress: Progress | None = None, stop: asyncio.Event | None = None
    ) -> int:
        """Run one request here (no daemon): returns the rows copied."""
        from syncengine.runtime.runner import process

        (request,) = [
            r for r in self.state.table_requests(self.pipeline.name) if r.id == request_id
        ]
        copied = 0
        async for batch in self._one(request, foreground=True):
            if isinstance(batch, Sweep):
                await batch()
                continue
            report = await process(self.pipeline, [batch], None)
            if not batch.meta.get("deletes"):
                copied += report.read
                if progress is not None:
                    progress.advance(batch.table, report.read)
            if stop is not None and stop.is_set():
                raise Interrupted(
                    f"{self.pipeline.name}: re-snapshot of {request.table} interrupted",
                    hint="progress is kept per chunk; run it again (or start the daemon) to resume",
                )
        return copied

    async def _target_empty(self, request: TableRequest) -> bool | None:
        """What the request noted (an added table: :func:`target_empty` before its capture
        began), else whether the target tables are empty now, before the copy starts."""
        if request.target_empty is not None or request.where is not None:
            return request.target_empty
        mappings = [m for _, m in self.pipeline.mappings_for(request.table)]
        return await target_empty(self.pipeline.target, mappings)

    async def _one(
        self, request: TableRequest, foreground: bool = False
    ) -> AsyncIterator[ChangeBatch | Sweep]:
        name = self.pipeline.name
        namespace = table_chunks(name)
        if request.status == "pending":
            # a new request starts over; a ``running`` one resumes at its first chunk not done
            self.state.clear_chunks(namespace, request.table)
            empty = await self._target_empty(request)
            self.state.update_table_request(request.id, "running", target_empty=empty)
            request = replace(request, status="running", target_empty=empty)
        log.info(
            "%s: snapshotting %s while the pipeline streams (request %d)",
            name,
            request.table,
            request.id,
        )
        # from before the first chunk is read until the last row is applied, the stream's
        # changes of the table record their positions per key (see DENSE_FENCE), and so do
        # those of the tables whose mappings write its target tables: the sweep reads their
        # keys too, and must not delete a row of theirs the stream applied after that read
        from syncengine.runtime.sharedtargets import cowriter_tables

        dense = {request.table, *cowriter_tables(self.pipeline, request.table)}
        dense -= self.pipeline.dense_fence  # (another request's stay until it ends)
        self.pipeline.dense_fence |= dense
        held = HeldCopy(self.pipeline, request, foreground)
        try:
            source = table_source(self.pipeline)
            snapshot = source.table_snapshot(request.table, request.where, self.parallel, held)
            async for batch in snapshot:
                # a keyless copy replaces the table under its fence (truncate first): as is
                yield as_updates(batch) if batch.key else batch
        except FatalError as exc:  # needs a person: the daemon goes on with the others
            self.state.update_table_request(request.id, "failed", str(exc))
            log.error("%s: snapshot of %s failed: %s", name, request.table, exc)
            if held.used and not foreground:
                log.error(
                    "%s: %s stays paused (its target table is partly copied): fix the cause "
                    "and re-snapshot it",
                    name,
                    request.table,
                )
            if foreground:
                raise
            return
        else:
            if request.where is None and not held.used and not request.target_empty:
                from syncengine.runtime.sweep import find_deleted

                # read and compared here, beside the stream; only the deletes wait for the applier
                found = await find_deleted(self.pipeline, request.table)
                yield Sweep(self.pipeline, request.table, found)
        finally:
            self.pipeline.dense_fence -= dense
        if request.target_empty:
            log.info(
                "%s: %s was empty at the target before the copy: no sweep", name, request.table
            )
        self.state.clear_chunks(namespace, request.table)
        held.release()  # before the request ends: a crash between them copies again
        self.state.update_table_request(request.id, "done")
        log.info("%s: snapshot of %s done (request %d)", name, request.table, request.id)
