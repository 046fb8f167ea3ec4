"""The last hour of each pipeline's lag and throughput, sampled in memory by the console.

No history is stored by the engine, and keeping one in the state store would add a write per
sample to every daemon; the console keeps what it sees while it runs (a sample every
``interval`` seconds, an hour of them), which is what the chart shows. Under the daemon a
sample reads the daemon's own metrics (no connection); standalone, it asks the source like
``syncengine status`` does.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

WINDOW = 3600.0


@dataclass(frozen=True)
class Sample:
    at: float
    lag_seconds: float | None = None
    lag_bytes: float | None = None
    retained_wal_bytes: float | None = None
    applied: float | None = None
    """Changes applied so far (a running total), for throughput."""
    chunks_done: dict[str, int] | None = None
    """Snapshot chunks done per source table, for an ETA."""


class History:
    def __init__(self, window: float = WINDOW) -> None:
        self.window = window
        self._samples: dict[str, deque[Sample]] = {}

    def add(self, pipeline: str, sample: Sample) -> None:
        samples = self._samples.setdefault(pipeline, deque())
        samples.append(sample)
        while samples and samples[0].at < sample.at - self.window:
            samples.popleft()

    def samples(self, pipeline: str) -> list[Sample]:
        return list(self._samples.get(pipeline, ()))

    def latest(self, pipeline: str) -> Sample | None:
        samples = self._samples.get(pipeline)
        return samples[-1] if samples else None

    def throughput(self, pipeline: str) -> float | None:
        """Changes per second between the last two samples that count them."""
        counted = [s for s in self._samples.get(pipeline, ()) if s.applied is not None]
        if len(counted) < 2:
            return None
        first, last = counted[-2], counted[-1]
        assert first.applied is not None and last.applied is not None
        elapsed = last.at - first.at
        return max(0.0, (last.applied - first.applied) / elapsed) if elapsed > 0 else None

    def chunk_rate(self, pipeline: str, table: str) -> float | None:
        """Snapshot chunks done per second over the window, for one table."""
        seen = [
            (s.at, s.chunks_done[table])
            for s in self._samples.get(pipeline, ())
            if s.chunks_done and table in s.chunks_done
        ]
        if len(seen) < 2 or seen[-1][0] <= seen[0][0]:
            return None
        return (seen[-1][1] - seen[0][1]) / (seen[-1][0] - seen[0][0])


@dataclass(frozen=True)
class Chart:
    """One series over the last hour as an SVG polyline (user units of a 600×120 box)."""

    label: str
    points: str
    peak: float | None
    count: int
    span: float = 0.0
    """Seconds from the left edge (the oldest sample, at most an hour ago) to now."""
    width: int = 600
    height: int = 120


def chart(
    label: str,
    samples: list[Sample],
    field: str,
    now: float | None = None,
    window: float = WINDOW,
) -> Chart:
    """``field`` of ``samples`` (``lag_seconds``, ``lag_bytes``…) scaled to its own peak,
    over the time sampled so far (at most ``window``: the chart fills as the console runs)."""
    now = time.time() if now is None else now
    values = [(s.at, float(v)) for s in samples if (v := getattr(s, field)) is not None]
    peak = max((v for _, v in values), default=None)
    scale = peak if peak else 1.0
    span = min(window, max(now - values[0][0], 60.0)) if values else window
    width, height = Chart.width, Chart.height
    points = [
        f"{width * (1 - (now - at) / span):.1f},{height - 4 - (height - 8) * v / scale:.1f}"
        for at, v in values
    ]
    return Chart(label, " ".join(points), peak, len(values), span)
