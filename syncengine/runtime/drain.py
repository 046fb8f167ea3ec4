"""The daemon's stop, bounded: SIGTERM lets every pipeline finish its in-flight group, but a
pipeline still draining after ``drain_timeout`` is cancelled, so the process exits when a
supervisor (systemd, Kubernetes) expects it to rather than being killed mid-write later.

Cancelling is safe: a group's rows, shadow and checkpoint commit in one target transaction and
the source is acknowledged only after it, so a cancelled group is read again on the next start.
What the overdue pipelines were waiting on is logged first (each task's chain of awaits): a
drain that needs the deadline is a bug to find, not a normal stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any

log = logging.getLogger("syncengine.daemon")

#: after the cancellation, how long the cancelled tasks get to run their cleanup
CLEANUP_SECONDS = 10.0


async def drain(tasks: Collection[asyncio.Task[Any]], timeout: float) -> bool:
    """Wait for ``tasks``; past ``timeout`` seconds log what they wait on and cancel them.
    Returns whether all of them ended on their own."""
    if not tasks:
        return True
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    if not pending:
        return True
    log.warning(
        "still draining %.0f s after the stop request: cancelling %d pipeline task(s) (their "
        "in-flight groups are read again on the next start); they were waiting on:\n%s",
        timeout,
        len(pending),
        "\n".join(describe(task) for task in asyncio.all_tasks() if not task.done()),
    )
    for task in pending:
        task.cancel()
    _, stuck = await asyncio.wait(pending, timeout=CLEANUP_SECONDS)
    if stuck:
        log.warning("%d pipeline task(s) did not end %.0f s after their cancellation",
                    len(stuck), CLEANUP_SECONDS)  # fmt: skip
    return False


def describe(task: asyncio.Task[Any]) -> str:
    """A task's name and its chain of awaits, outermost first (``Task.get_stack`` gives one
    frame for a coroutine)."""
    frames = []
    awaited: Any = task.get_coro()
    while awaited is not None:
        frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
        frame = frame or getattr(awaited, "gi_frame", None)
        if frame is not None:
            code = frame.f_code
            frames.append(f"    {code.co_filename}:{frame.f_lineno} in {code.co_name}")
        awaited = (
            getattr(awaited, "cr_await", None)
            or getattr(awaited, "ag_await", None)
            or getattr(awaited, "gi_yieldfrom", None)
        )
    return f"  task {task.get_name()}:\n" + "\n".join(frames)
