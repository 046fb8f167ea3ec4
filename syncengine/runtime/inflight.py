"""The stream's target commits, one in flight while the next group is prepared.

Applying a group is a chain: this process maps, compacts and resolves it, then waits while the
target executes it. Run strictly in turn, the two halves never overlap: during a drain, when
decoding is ahead, one of two cores idled while this chain worked through what was read. So
the group after the one committing is prepared meanwhile (:meth:`Pipeline.prepare` with
``ahead``), and its commit starts as soon as the one before it returned.

What does not change: commits run one at a time, in the stream's order, and a group's position
is acknowledged to the source only after its own commit, before the next commit starts. A
group is prepared ahead only when that reads and writes nothing the commit in flight touches
(:class:`~syncengine.runtime.pipeline.PrepareLater` otherwise: it is then prepared after that
commit, as before). A commit that fails raises at the next :meth:`InFlight.settle`, which the
stream also reaches as soon as the commit ends (it waits on :meth:`InFlight.waiting`); the group
prepared ahead of it is dropped with the stream, which resumes from the checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from syncengine.changes import ChangeBatch
from syncengine.errors import TargetUnavailable
from syncengine.runtime.pipeline import Pipeline, Prepared, PrepareLater
from syncengine.sources.base import resume_position

log = logging.getLogger("syncengine.runner")

T = TypeVar("T")


class InFlight:
    """At most one stream group's commit (and then its acknowledgement) running."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.task: asyncio.Task[None] | None = None
        #: changes applied by the commits that finished
        self.applied = 0

    def waiting(self) -> list[asyncio.Future[None]]:
        """The commit in flight, for the stream to wake on when it ends."""
        return [self.task] if self.task is not None else []

    async def settle(self) -> None:
        """Wait for the commit in flight and its acknowledgement; raise its failure."""
        task, self.task = self.task, None
        if task is not None:
            await task

    async def submit(self, group: list[ChangeBatch]) -> None:
        """Prepare ``group`` (while the commit in flight runs, when it can be), wait for that
        commit, then start ``group``'s."""
        position = None
        for batch in group:
            position = resume_position(batch) or position
        prepared: Prepared | None = None
        if self.task is not None:
            try:
                prepared = await self.pipeline.prepare(group, position, ahead=True)
            except PrepareLater as why:
                log.debug("%s: group prepared after the commit before it: %s",
                          self.pipeline.name, why)  # fmt: skip
            except BaseException:
                with contextlib.suppress(Exception):
                    await self.settle()  # what that commit did stays committed and acknowledged
                raise
        await self.settle()
        if prepared is None:
            prepared = await deadline(self.pipeline, self.pipeline.prepare(group, position), group)
        self.task = asyncio.create_task(self._commit(prepared, group, position))

    async def _commit(
        self, prepared: Prepared, group: list[ChangeBatch], position: str | None
    ) -> None:
        report = await deadline(self.pipeline, self.pipeline.commit(prepared), group)
        if position is not None:
            await self.pipeline.source.acknowledge(position)
        self.applied += sum(report.applied.values())

    async def cancel(self) -> None:
        """Stop the commit in flight (its transaction rolls back; the group is read again)."""
        task, self.task = self.task, None
        if task is None:
            return
        task.cancel()  # (a task that ended keeps its result)
        with contextlib.suppress(BaseException):
            await task


async def deadline(pipeline: Pipeline, step: Awaitable[T], group: Sequence[ChangeBatch]) -> T:
    """``step`` (a group's target work) within ``batch.timeout``: a connection that went
    silent (half-open, no FIN/RST) would otherwise stall the pipeline forever. Past it the
    connection is presumed lost; the supervisor reconnects and resumes from the checkpoint."""
    timeout = pipeline.config.batch.timeout
    try:
        return await asyncio.wait_for(step, timeout)
    except TimeoutError:
        raise TargetUnavailable(
            f"{pipeline.name}: a batch of {sum(b.num_rows for b in group)} rows took longer than "
            f"{timeout:.0f} s to apply; the connection is presumed lost",
            hint="raise batch.timeout if batches are legitimately that slow",
        ) from None
