"""``status`` in cluster mode: each pipeline's stream workflow as Temporal sees it.

Added to what ``status`` reads from the target (checkpoint, lag): whether the workflow runs,
which worker holds its stream activity, which attempt that is, the fencing epoch and the
changes applied that the attempt last heartbeated, and why the last attempt or the workflow
failed. Read-only; nothing here waits for a worker.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from syncengine.cluster.service import connected, failure_message
from syncengine.cluster.tasks import workflow_id
from syncengine.config.cluster import ClusterConfig


async def stream_states(cluster: ClusterConfig, names: list[str]) -> dict[str, dict[str, Any]]:
    """pipeline → its stream workflow's state (keys prefixed ``cluster_``)."""
    client = await connected(cluster)
    return {name: await _state(client, name) for name in names}


async def _state(client: Client, name: str) -> dict[str, Any]:
    wid = workflow_id("stream", name)
    handle = client.get_workflow_handle(wid)
    state: dict[str, Any] = {"cluster_workflow": wid, "cluster_state": "not applied"}
    try:
        described = await handle.describe()
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise
        return state
    status = described.status or WorkflowExecutionStatus.RUNNING
    state["cluster_state"] = status.name.lower().replace("_", " ")
    if status == WorkflowExecutionStatus.FAILED:
        try:
            await handle.result()
        except WorkflowFailureError as exc:
            state["cluster_error"] = failure_message(exc)
    for pending in described.raw_description.pending_activities:
        if pending.activity_id != "stream":
            continue
        state["cluster_worker"] = pending.last_worker_identity or None
        state["cluster_attempt"] = pending.attempt
        if pending.HasField("heartbeat_details") and pending.heartbeat_details.payloads:
            details = await client.data_converter.decode(pending.heartbeat_details.payloads)
            if details and isinstance(details[-1], dict):
                state["cluster_epoch"] = details[-1].get("epoch")
                state["cluster_applied"] = details[-1].get("applied")
        if pending.HasField("last_failure") and pending.last_failure.message:
            state["cluster_error"] = pending.last_failure.message
    return state
