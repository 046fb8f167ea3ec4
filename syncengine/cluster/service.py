"""Talking to the Temporal service: connect, run a worker, start (apply) workflows.

``apply`` is idempotent because workflow IDs are deterministic (:func:`~.tasks.workflow_id`):
a backfill workflow already running for a pipeline is left alone, one that completed is not
started again, and only one that failed, was cancelled or terminated is started anew (its
chunks whose done-mark is committed with the same bounds are not copied again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import FailureError, WorkflowAlreadyStartedError
from temporalio.service import RPCError
from temporalio.worker import Worker

from syncengine.cluster import ClusterUnavailable, identity
from syncengine.cluster.activities import BackfillActivities, StreamActivities
from syncengine.cluster.tasks import BackfillRequest, BackfillResult, workflow_id
from syncengine.cluster.workflows import BackfillWorkflow, StreamWorkflow
from syncengine.config.cluster import ClusterConfig
from syncengine.config.models import Config
from syncengine.errors import FatalError
from syncengine.runtime.retry import Backoff
from syncengine.state import StateStore

log = logging.getLogger("syncengine.cluster")


#: how long ``apply`` keeps trying to reach Temporal before it exits 3
APPLY_PATIENCE = 30.0


async def connect(
    cluster: ClusterConfig, patience: float = APPLY_PATIENCE, stop: asyncio.Event | None = None
) -> Client | None:
    """A client, trying again with jittered backoff for ``patience`` seconds (a service that
    is starting or busy answers late); None when ``stop`` was set meanwhile."""
    backoff = Backoff(initial=0.5, maximum=10.0)
    deadline = time.monotonic() + patience
    while True:
        try:
            return await Client.connect(
                cluster.address, namespace=cluster.namespace, identity=identity()
            )
        except (RuntimeError, RPCError) as exc:
            delay = backoff.next_delay()
            if time.monotonic() + delay > deadline:
                raise ClusterUnavailable(
                    f"cannot reach Temporal at {cluster.address} (namespace "
                    f"{cluster.namespace}): {exc}",
                    hint="check cluster.address and that the Temporal service runs",
                ) from None
            log.warning("cannot reach Temporal at %s yet (%s); retrying", cluster.address, exc)
        if stop is None:
            await asyncio.sleep(delay)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return None


async def run_worker(
    config: Config,
    cluster: ClusterConfig,
    state: StateStore,
    concurrency: int,
    stop: asyncio.Event,
    load: Callable[[], Config] | None = None,
) -> None:
    """Poll the task queue until ``stop`` is set, then finish the activities in hand. A
    worker waits for Temporal as long as it takes (it is started before or beside it).
    ``load`` reads the worker's config again (each stream attempt runs the current file)."""
    client = await connect(cluster, math.inf, stop)
    if client is None:
        return
    activities = BackfillActivities(config, state, client)
    streams = StreamActivities(load or (lambda: config), state, client)
    worker = Worker(
        client,
        task_queue=cluster.task_queue,
        workflows=[BackfillWorkflow, StreamWorkflow],
        activities=[
            activities.plan_backfill,
            activities.copy_chunk,
            streams.stream,
            streams.plan_snapshot,
            streams.snapshot_chunk,
        ],
        max_concurrent_activities=concurrency,
        # on SIGTERM, chunks in hand get one heartbeat timeout to commit; after that they are
        # cancelled (rolled back) and Temporal gives them to another worker; a stream drains
        graceful_shutdown_timeout=timedelta(seconds=cluster.heartbeat),
    )
    log.info(
        "worker %s polling %s on %s (%d chunk(s) at once)",
        identity(), cluster.task_queue, cluster.address, concurrency,
    )  # fmt: skip
    running = asyncio.ensure_future(worker.run())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        # a worker that fails for good (its polls refused) ends the command with its error
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not running.done():
            await worker.shutdown()
        await running
    finally:
        stopping.cancel()
        await activities.close()


async def connected(cluster: ClusterConfig) -> Client:
    client = await connect(cluster)
    assert client is not None  # no stop event: a client or an error
    return client


@dataclass(frozen=True)
class Applied:
    pipeline: str
    workflow_id: str
    #: backfill: started, running (left alone) or completed (not started again); stream:
    #: started, running (unchanged), updated or stopped
    outcome: str


async def start_once(
    client: Client,
    run: Any,
    request: object,
    wid: str,
    cluster: ClusterConfig,
    reuse: WorkflowIDReusePolicy,
    memo: dict[str, Any] | None = None,
) -> bool:
    """Start the workflow ``wid`` on the cluster's task queue; False when one with that ID
    runs already (conflict policy FAIL: it is left alone) or ``reuse`` forbids another."""
    try:
        await client.start_workflow(
            run,
            request,
            id=wid,
            task_queue=cluster.task_queue,
            id_reuse_policy=reuse,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            memo=memo,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


async def apply_backfills(
    config: Config, cluster: ClusterConfig, names: list[str]
) -> list[Applied]:
    """Start each pipeline's backfill workflow unless it runs or has completed."""
    client = await connected(cluster)
    done: list[Applied] = []
    reuse = WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY
    for name in names:
        wid = workflow_id("backfill", name)
        request = BackfillRequest(name, heartbeat=cluster.heartbeat)
        if await start_once(client, BackfillWorkflow.run, request, wid, cluster, reuse):
            outcome = "started"
        else:
            described = await client.get_workflow_handle(wid).describe()
            running = described.status == WorkflowExecutionStatus.RUNNING
            outcome = "running" if running else "completed"
        done.append(Applied(name, wid, outcome))
    return done


async def wait(cluster: ClusterConfig, names: list[str]) -> list[BackfillResult]:
    """The results of the pipelines' backfill workflows, waiting for them to end."""
    client = await connected(cluster)
    results = []
    for name in names:
        wid = workflow_id("backfill", name)
        handle = client.get_workflow_handle(wid, result_type=BackfillResult)
        try:
            results.append(await handle.result())
        except WorkflowFailureError as exc:
            message = failure_message(exc)
            raise FatalError(f"{name}: cluster backfill failed: {message}") from None
    return results


def failure_message(exc: WorkflowFailureError) -> str:
    """What failed a workflow: the activity's own error, not its wrappers."""
    cause: BaseException = exc.cause
    while isinstance(cause, FailureError) and cause.cause is not None:
        cause = cause.cause
    return cause.message if isinstance(cause, FailureError) else str(cause)
