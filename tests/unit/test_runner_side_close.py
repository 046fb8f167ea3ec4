"""A side iterator that ended before the applier took its last item (a daemon stopped by
SIGTERM right after a table's snapshot) must not be logged as "Task exception was never
retrieved … StopAsyncIteration" when the applier closes."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from typing import Any

from syncengine.runtime.runner import _SideBatches


async def _nothing() -> AsyncIterator[Any]:
    return
    yield


def test_closing_after_the_side_iterator_ended_logs_nothing():
    reported: list[dict[str, Any]] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: reported.append(ctx))
        side = _SideBatches(None, _nothing())  # type: ignore[arg-type]
        await asyncio.sleep(0.01)  # the iterator ends: its future holds StopAsyncIteration
        assert side.next is not None and side.next.done()
        await side.close()
        side.next = None
        del side
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert not [c for c in reported if "never retrieved" in str(c.get("message"))]
