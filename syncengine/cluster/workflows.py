"""The workflows (deterministic code: Temporal replays it from its history on any worker).

:class:`BackfillWorkflow` plans a pipeline's chunks in one activity, then runs one activity per
chunk, ``in_flight`` at a time across all workers. Activity IDs name the chunk
(``chunk:<table>:<n>``), so a chunk's attempts, on whichever worker, are one activity in the
history. Rows never pass through here: activities get :class:`~.tasks.ChunkTask` descriptors
and return counts.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from syncengine.cluster.tasks import BackfillRequest, BackfillResult, ChunkResult, ChunkTask

#: error types an activity raises that no retry can fix (bad config, refused rows)
FATAL = ["FatalError"]
PLAN_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=30), non_retryable_error_types=FATAL)
#: a chunk retries until it is copied (a lost worker, a restarting server) or fails for good
CHUNK_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=FATAL,
)


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
                result: ChunkResult = await workflow.execute_activity(
                    "syncengine-copy-chunk",
                    task,
                    result_type=ChunkResult,
                    activity_id=f"chunk:{task.table}:{task.chunk}",
                    start_to_close_timeout=timedelta(hours=6),
                    heartbeat_timeout=timedelta(seconds=request.heartbeat),
                    retry_policy=CHUNK_RETRY,
                )
                return result

        results = await asyncio.gather(*(copy(t) for t in tasks))
        return BackfillResult(
            request.pipeline,
            len(results),
            sum(r.rows for r in results),
            [f"{r.table}:{r.chunk}" for r in results if r.skipped],
        )
