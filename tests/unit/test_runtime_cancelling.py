"""A stream task that loses its cancellation is cancelled again (runtime/cancelling.py): the
stream's stop, and the supervisor's restart after it, never wait for it forever."""

from __future__ import annotations

import asyncio
import logging

import pytest

from syncengine.errors import TargetUnavailable
from syncengine.runtime import cancelling, runner
from tests.unit.test_runtime_runner import Pipeline, Source, batch


@pytest.fixture(autouse=True)
def quick(monkeypatch):
    monkeypatch.setattr(cancelling, "AGAIN_SECONDS", 0.05)


async def finishes_anyway(swallowed: list[int]) -> None:
    """A read that completes although it was cancelled (once), as a library's can."""
    try:
        await asyncio.sleep(0.02)
    except asyncio.CancelledError:
        if swallowed:
            raise
        swallowed.append(1)
    await asyncio.Event().wait()  # then blocks, as a reader does on its full queue


def test_a_task_that_lost_its_cancellation_is_cancelled_again(caplog):
    swallowed: list[int] = []

    async def scenario() -> asyncio.Task[None]:
        task = asyncio.create_task(finishes_anyway(swallowed), name="reader")
        await asyncio.sleep(0.005)
        await asyncio.wait_for(cancelling.cancel_and_wait(task), timeout=5)
        return task

    with caplog.at_level(logging.DEBUG, "syncengine.runner"):
        task = asyncio.run(scenario())
    assert swallowed == [1] and task.cancelled()
    assert "task reader ran on after its cancellation" in caplog.text


def test_a_task_that_ends_at_once_is_cancelled_once_and_its_error_is_dropped(caplog):
    async def fails() -> None:
        raise RuntimeError("its own error")

    async def scenario() -> None:
        task = asyncio.create_task(fails())
        await asyncio.sleep(0)
        await cancelling.cancel_and_wait(task)  # ended already: nothing raised
        waiting = asyncio.create_task(asyncio.sleep(10))
        await asyncio.sleep(0)
        await cancelling.cancel_and_wait(waiting)
        assert waiting.cancelled()

    with caplog.at_level(logging.DEBUG, "syncengine.runner"):
        asyncio.run(scenario())
    assert "ran on" not in caplog.text


def test_the_caller_cancelled_while_it_waits_still_waits_for_the_task():
    async def slow_cleanup() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.shield(asyncio.sleep(0.1))  # its cleanup takes a moment

    async def scenario() -> bool:
        task = asyncio.create_task(slow_cleanup())
        await asyncio.sleep(0)
        caller = asyncio.create_task(cancelling.cancel_and_wait(task))
        await asyncio.sleep(0.01)
        caller.cancel()
        await caller
        return task.done()

    assert asyncio.run(scenario())


class LosingSource(Source):
    """A stream whose read loses the first cancellation (it completes anyway)."""

    def __init__(self) -> None:
        super().__init__(10_000)
        self.lost = False

    async def stream(self, start, until=None):
        for i in range(self.count):
            yield await asyncio.ensure_future(self._read(i))

    async def _read(self, i: int):
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if self.lost:
                raise
            self.lost = True
        return batch(i)


def test_a_failed_stream_ends_although_its_reader_lost_the_cancellation():
    source = LosingSource()
    pipeline = Pipeline(source, fail_after=3)

    async def scenario() -> BaseException | None:
        stream = asyncio.create_task(runner.stream(pipeline, None))
        await asyncio.wait({stream}, timeout=5)
        if not stream.done():  # (a cancellation from outside would end it: not the point)
            await cancelling.cancel_and_wait(stream)
            return None
        return stream.exception()

    # before: the reader read on after the lost cancellation, blocked on the full queue, and
    # the stream's cleanup waited for it forever
    failure = asyncio.run(scenario())
    assert isinstance(failure, TargetUnavailable), "the stream never ended"
    assert source.lost
