"""The daemon's bounded drain: tasks that end in time are waited for; one still running at
the deadline is cancelled after what it waits on was logged."""

from __future__ import annotations

import asyncio
import logging

from syncengine.runtime.drain import drain


async def _quick() -> None:
    await asyncio.sleep(0.01)


async def _stuck_on_a_socket() -> None:
    await asyncio.Event().wait()  # never set: stands for a read that never answers


async def _pipeline(cleaned: list[bool]) -> None:
    try:
        await _stuck_on_a_socket()
    finally:
        cleaned.append(True)


def test_tasks_that_end_in_time_are_waited_for(caplog):
    async def run() -> tuple[bool, list[asyncio.Task[None]]]:
        tasks = [asyncio.create_task(_quick()) for _ in range(3)]
        return await drain(tasks, 5.0), tasks

    with caplog.at_level(logging.WARNING, logger="syncengine.daemon"):
        ended, tasks = asyncio.run(run())
    assert ended
    assert all(t.done() and not t.cancelled() for t in tasks)
    assert caplog.records == []


def test_a_task_past_the_deadline_is_cancelled_and_its_awaits_logged(caplog):
    cleaned: list[bool] = []

    async def run() -> tuple[bool, asyncio.Task[None], asyncio.Task[None]]:
        stuck = asyncio.create_task(_pipeline(cleaned), name="pipeline-p")
        quick = asyncio.create_task(_quick())
        return await drain([stuck, quick], 0.2), stuck, quick

    with caplog.at_level(logging.WARNING, logger="syncengine.daemon"):
        ended, stuck, quick = asyncio.run(run())
    assert not ended
    assert stuck.cancelled() and cleaned == [True]
    assert quick.done() and not quick.cancelled()
    message = caplog.records[0].getMessage()
    assert "cancelling 1 pipeline task(s)" in message
    assert "task pipeline-p:" in message
    assert "in _pipeline" in message and "in _stuck_on_a_socket" in message
