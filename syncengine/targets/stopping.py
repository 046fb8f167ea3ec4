"""Giving up a long apply when the process is asked to stop.

An ordinary group commits in well under a second, so on SIGTERM the runner lets it finish
(drain). A group whose rows the target refuses is bisected row by row, which can take minutes;
waiting for it would ignore the signal. The runner therefore publishes its stop event here for
the duration of its work, and a target checks it at each safe point of such a loop (between
bisection steps, inside the open transaction): :func:`check` raises :class:`Interrupted`, the
transaction rolls back, nothing of the group is committed (no data, no shadow, no checkpoint,
and no dead letters, which are written only after the commit), and the next run applies the
group again from the checkpoint.

A context variable rather than a parameter: the stop event belongs to the caller's task, and
the target protocol stays as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from syncengine.errors import Interrupted

_STOP: ContextVar[asyncio.Event | None] = ContextVar("syncengine_stop", default=None)


@contextmanager
def stoppable(stop: asyncio.Event | None) -> Iterator[None]:
    """Within this block (and tasks started in it), :func:`check` honours ``stop``."""
    token = _STOP.set(stop)
    try:
        yield
    finally:
        _STOP.reset(token)


def check() -> None:
    """Raise :class:`Interrupted` when a stop was requested (call inside the transaction)."""
    stop = _STOP.get()
    if stop is not None and stop.is_set():
        raise Interrupted(
            "stopped while the target was isolating refused rows; nothing of that group "
            "was committed",
            hint="the next run applies the group again from the checkpoint",
        )
