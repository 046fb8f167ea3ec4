"""Cumulative seconds per phase of a pipeline's work, so a slow run says where its time went.

One clock read per batch and phase, never per row. The backfill logs the totals when it ends
(``backfill phases: read … s, map … s, resolve … s, apply … s``), a stream (``sync --once``)
likewise (``stream phases: …``); the benchmarks print them, and every addition also goes to
the ``syncengine_phase_seconds_total`` counter (``on_add``). ``read`` is the time the consumer
waited for the next batch (the readers run concurrently), ``decode`` the reader's CPU time
turning replication bytes into batches (it overlaps the others: another task of this
process, or with ``SYNCENGINE_PG_DECODE=process`` another process),
``apply`` is the target transaction: staging, writes, state rows and the commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class PhaseClock:
    def __init__(self, on_add: Callable[[str, float], None] | None = None) -> None:
        self.seconds: dict[str, float] = {}
        self.on_add = on_add

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
        if self.on_add is not None:
            self.on_add(phase, seconds)

    @contextmanager
    def timing(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - started)

    def summary(self) -> str:
        return ", ".join(f"{phase} {seconds:.2f} s" for phase, seconds in self.seconds.items())
