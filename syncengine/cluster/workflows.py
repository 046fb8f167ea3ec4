"""The workflows (deterministic code: Temporal replays it from its history on any worker).

:class:`StreamWorkflow` runs a pipeline's stream: one activity at a time (activity ID
``stream``), which holds the pipeline's slot or change stream, retried without end on whichever
worker polls first when its worker dies or stalls past the heartbeat timeout. When the activity
ends its slice (``cluster.stream_slice``), or ``apply`` signals ``update`` with a changed
config, the workflow continues as new: its history never grows past a few events per slice.
``stop`` (``apply`` of a config without the pipeline) cancels the activity, which drains, and
ends the workflow. A new pipeline's run first plans its initial snapshot and copies its chunks
as activities on any worker (``snapshot:<table>:<n>``, ``snapshot_in_flight`` at a time), then
starts the stream where they were reconciled from (:mod:`.snapchunks`). The workflow ID is
per pipeline, so only one runs: one reader per slot.

:class:`BackfillWorkflow` plans a pipeline's chunks in one activity, then runs one activity per
chunk, ``in_flight`` at a time across all workers. Activity IDs name the chunk
(``chunk:<table>:<n>``), so a chunk's attempts, on whichever worker, are one activity in the
history. Rows never pass through here: activities get :class:`~.tasks.ChunkTask` descriptors
and return counts.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, replace
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from syncengine.cluster.tasks import (
        BackfillRequest,
        BackfillResult,
        ChunkResult,
        ChunkTask,
        SpreadChunk,
        SpreadPlan,
        StreamRequest,
        StreamResult,
    )

#: error types an activity raises that no retry can fix (bad config, refused rows)
FATAL = ["FatalError"]
PLAN_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30), non_retryable_error_types=FATAL)
#: a chunk retries until it is copied (a lost worker, a restarting server) or fails for good
CHUNK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=FATAL,
)
#: a stream attempt is retried until a fatal error (the pipeline cannot run as configured)
STREAM_RETRY = CHUNK_RETRY
#: an attempt's own limit: heartbeats, not this, notice a lost worker; the initial backfill
#: runs inside the first attempt and may take long
STREAM_ATTEMPT_LIMIT = timedelta(days=365)


@workflow.defn(name="syncengine-backfill")
class BackfillWorkflow:
    @workflow.run
    async def run(self, request: BackfillRequest) -> BackfillResult:
        tasks = await workflow.execute_activity(
            "syncengine-plan-backfill",
            request.pipeline,
            result_type=list[ChunkTask],
            start_to_close_timeout=timedelta(hours=1),
            retry_policy=PLAN_RETRY,
        )
        room = asyncio.Semaphore(max(1, request.in_flight))

        async def copy(task: ChunkTask) -> ChunkResult:
            async with room:
                return await _chunk_activity(
                    "syncengine-copy-chunk", task, f"chunk:{task.table}:{task.chunk}", request
                )

        results = await asyncio.gather(*(copy(t) for t in tasks))
        return BackfillResult(
            request.pipeline,
            len(results),
            sum(r.rows for r in results),
            [f"{r.table}:{r.chunk}" for r in results if r.skipped],
        )


async def _chunk_activity(
    name: str, arg: object, activity_id: str, request: BackfillRequest | StreamRequest
) -> ChunkResult:
    """One chunk copy (a backfill's or a stream's spread snapshot): the same timeout, the
    request's heartbeat and :data:`CHUNK_RETRY` for both."""
    result: ChunkResult = await workflow.execute_activity(
        name,
        arg,
        result_type=ChunkResult,
        activity_id=activity_id,
        start_to_close_timeout=timedelta(hours=6),
        heartbeat_timeout=timedelta(seconds=request.heartbeat),
        retry_policy=CHUNK_RETRY,
    )
    return result


def stream_memo(request: StreamRequest) -> dict[str, object]:
    """What ``apply`` reads back (describe) to compare with the config it was given: not
    what the workflow itself carries from one run to the next."""
    return {"request": asdict(replace(request, spread=None))}


@workflow.defn(name="syncengine-stream")
class StreamWorkflow:
    def __init__(self) -> None:
        self._update: StreamRequest | None = None
        self._stop = False

    @workflow.signal(name="update")
    def update(self, request: StreamRequest) -> None:
        """The pipeline's config changed: restart the stream with ``request``."""
        self._update = request

    @workflow.signal(name="stop")
    def stop(self) -> None:
        """The pipeline left the config: stop its stream and end."""
        self._stop = True

    @workflow.run
    async def run(self, request: StreamRequest) -> StreamResult:
        spread = request.spread
        if spread is None and request.snapshot_in_flight > 0:  # a new run: anything to copy?
            planning = workflow.start_activity(
                "syncengine-plan-snapshot",
                request,
                result_type=SpreadPlan,
                start_to_close_timeout=timedelta(hours=1),
                retry_policy=PLAN_RETRY,
            )
            if not await self._unless_signalled(planning):
                return self._signalled(request)
            spread = await planning
        if spread is not None and spread.tasks:
            room = asyncio.Semaphore(max(1, request.snapshot_in_flight))
            copying = asyncio.gather(*(self._copy(request, spread, t, room) for t in spread.tasks))
            if not await self._unless_signalled(copying):
                return self._signalled(request)
            await copying  # a chunk that failed for good fails the workflow with its reason
            spread = SpreadPlan(spread.at)
        stream = workflow.start_activity(
            "syncengine-stream",
            replace(request, spread=SpreadPlan(spread.at) if spread is not None else None),
            result_type=StreamResult,
            activity_id="stream",
            start_to_close_timeout=STREAM_ATTEMPT_LIMIT,
            heartbeat_timeout=timedelta(seconds=request.heartbeat),
            retry_policy=STREAM_RETRY,
            # a stopped or updated stream drains before the next one may start
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        await workflow.wait_condition(
            lambda: stream.done() or self._stop or self._update is not None
        )
        if not stream.done():
            stream.cancel()
        try:
            result: StreamResult = await stream
            spread = SpreadPlan()  # a slice ran: the checkpoint is committed
        except (ActivityError, asyncio.CancelledError):
            if not (self._stop or self._update):
                raise  # a fatal error: the workflow fails with it (status shows it)
            result = StreamResult(request.pipeline, 0, 0)
        if self._stop:
            return result
        following = replace(self._update or request, spread=spread or SpreadPlan())
        workflow.continue_as_new(following, memo=stream_memo(following))

    async def _unless_signalled(self, work: asyncio.Future[Any]) -> bool:
        """Whether ``work`` ended before ``stop`` or ``update`` came; if not, it is cancelled
        (activities in flight with it) and awaited."""
        await workflow.wait_condition(lambda: work.done() or self._stop or self._update is not None)
        if work.done():
            return True
        work.cancel()
        with contextlib.suppress(ActivityError, asyncio.CancelledError):
            await work
        return False

    def _signalled(self, request: StreamRequest) -> StreamResult:
        """``stop`` or ``update`` while the snapshot was planned or copied: end, or start over
        with the new config, planning again (the slot is kept and its position with it; rows
        already copied are written again, before any stream)."""
        if self._stop:
            return StreamResult(request.pipeline, 0, 0)
        following = replace(self._update or request, spread=None)
        workflow.continue_as_new(following, memo=stream_memo(following))

    async def _copy(
        self, request: StreamRequest, spread: SpreadPlan, task: ChunkTask, room: asyncio.Semaphore
    ) -> ChunkResult:
        """One chunk of the spread snapshot (``room``: ``snapshot_in_flight`` at a time)."""
        async with room:
            return await _chunk_activity(
                "syncengine-snapshot-chunk",
                SpreadChunk(replace(request, spread=None), task, spread.at),
                f"snapshot:{task.table}:{task.chunk}",
                request,
            )
