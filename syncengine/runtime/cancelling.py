"""Cancelling the stream's reader and waiting until it has really ended.

Why not ``task.cancel(); await task``: a cancellation can be lost. ``asyncio.wait_for`` on
Python 3.11 returns the inner result when its caller is cancelled in the same turn as the
inner awaitable completes (CPython gh-86296, fixed in 3.12), and PyMongo's async driver sends
every command through ``wait_for``: a reader cancelled while its change stream asks for more
runs on as if nothing had been asked. It then read on, blocked on the stream's full queue
with nobody left to empty it, and the stream's cleanup waited for it forever: a two-way
direction did not restart for a minute and a half, until the daemon's drain deadline
cancelled the stream itself (docs/reliability-findings.md, the lost cancellation). A task
still running after :data:`AGAIN_SECONDS` is therefore cancelled again. (One still cleaning
up after its first cancellation has that cleanup cut short: it is bounded and best-effort, a
change stream's close, whose cursor the server reaps.)

Only the reader needs it: it reads until told to stop. The commit in flight and a side
iterator's next item are finite; one that loses its cancellation ends anyway when its work is
done, and cutting a target's own cleanup short (a Postgres cancel and rollback) would do harm.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger("syncengine.runner")

#: how long a cancelled task has to end before it is cancelled again
AGAIN_SECONDS = 1.0


async def cancel_and_wait(task: asyncio.Future[Any]) -> None:
    """Cancel ``task`` until it has ended; what it raised is dropped (the caller is cleaning
    up, its own error comes first). A cancellation of the caller while it waits is absorbed,
    as ``await task`` inside ``suppress(CancelledError)`` absorbed it: the caller is in its
    cleanup and finishes it."""
    requests = 0
    while not task.done():
        task.cancel()
        requests += 1
        try:
            await asyncio.wait({task}, timeout=AGAIN_SECONDS)
        except asyncio.CancelledError:
            continue
    if requests > 1:  # lost, or a cleanup longer than AGAIN_SECONDS: handled either way
        log.debug(
            "task %s ran on after its cancellation; it ended after %d requests",
            task.get_name() if isinstance(task, asyncio.Task) else task,
            requests,
        )
    if not task.cancelled():
        task.exception()  # retrieved: it does not matter any more
