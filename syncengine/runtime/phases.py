"""Cumulative seconds per phase of a pipeline's work, so a slow run says where its time went.

One clock read per batch and phase, never per row. The backfill logs the totals when it ends
(``backfill phases: read … s, map … s, resolve … s, apply … s``); the benchmarks print them.
``read`` is the time the consumer waited for the next batch (the readers run concurrently),
``apply`` is the target transaction: staging, writes, state rows and the commit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class PhaseClock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    @contextmanager
    def timing(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(phase, time.perf_counter() - started)

    def summary(self) -> str:
        return ", ".join(f"{phase} {seconds:.2f} s" for phase, seconds in self.seconds.items())
