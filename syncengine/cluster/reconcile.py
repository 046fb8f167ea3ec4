"""``apply``: the configured pipelines reconciled into stream workflows.

One workflow per pipeline, ``syncengine-stream-<pipeline>`` (deterministic: ``apply`` run
twice, or on two machines, finds the same one). For each configured pipeline ``apply`` starts
its workflow when none runs, leaves it alone when it runs the same config, and signals
``update`` when the config differs (the stream restarts with the new one, see
:class:`~.workflows.StreamWorkflow`). What "the same" means is the request the workflow keeps
in its memo: the pipeline's config fingerprint, heartbeat and slice. Run for the whole config
(no ``--pipeline``), it also signals ``stop`` to the running stream workflows of this task
queue whose pipeline is no longer configured; their slots stay (``checkpoints drop-slot``).
"""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy

from syncengine.cluster.service import Applied, connected, start_once
from syncengine.cluster.streamrun import fingerprint
from syncengine.cluster.tasks import StreamRequest, workflow_id
from syncengine.cluster.workflows import StreamWorkflow, stream_memo
from syncengine.config.cluster import ClusterConfig
from syncengine.config.models import Config

PREFIX = workflow_id("stream", "")


def stream_request(config: Config, cluster: ClusterConfig, name: str) -> StreamRequest:
    return StreamRequest(
        name,
        heartbeat=cluster.heartbeat,
        slice_seconds=cluster.stream_slice,
        fingerprint=fingerprint(config.pipelines[name]),
        snapshot_in_flight=cluster.snapshot_in_flight,
    )


async def apply_streams(
    config: Config, cluster: ClusterConfig, names: list[str], *, stop_others: bool
) -> list[Applied]:
    """Start, update or leave alone the stream workflow of each of ``names``; with
    ``stop_others``, stop those of pipelines the config no longer has."""
    client = await connected(cluster)
    done = [await _apply_one(client, cluster, stream_request(config, cluster, n)) for n in names]
    if stop_others:
        for name in sorted(await running_streams(client, cluster) - set(config.pipelines)):
            wid = workflow_id("stream", name)
            await client.get_workflow_handle(wid).signal(StreamWorkflow.stop)
            done.append(Applied(name, wid, "stopped"))
    return done


async def _apply_one(client: Client, cluster: ClusterConfig, request: StreamRequest) -> Applied:
    wid = workflow_id("stream", request.pipeline)
    # a stopped (completed) or failed pipeline's stream starts again
    reuse = WorkflowIDReusePolicy.ALLOW_DUPLICATE
    memo = stream_memo(request)
    if await start_once(client, StreamWorkflow.run, request, wid, cluster, reuse, memo):
        return Applied(request.pipeline, wid, "started")
    handle = client.get_workflow_handle(wid)
    if await (await handle.describe()).memo() == memo:
        return Applied(request.pipeline, wid, "running")
    await handle.signal(StreamWorkflow.update, request)
    return Applied(request.pipeline, wid, "updated")


async def running_streams(client: Client, cluster: ClusterConfig) -> set[str]:
    """Pipelines whose stream workflow runs on this task queue (the filter's values are
    constants; the task queue, which the config names, is compared here, not quoted into it)."""
    query = "WorkflowType = 'syncengine-stream' AND ExecutionStatus = 'Running'"
    found: set[str] = set()
    async for execution in client.list_workflows(query):
        if execution.task_queue == cluster.task_queue and execution.id.startswith(PREFIX):
            found.add(execution.id.removeprefix(PREFIX))
    return found
