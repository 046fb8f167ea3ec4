"""The lag chart's data: the daemon's stored history, and what the console samples itself.

Every running pipeline writes a lag sample to the state store every
``console.history_interval`` (:mod:`syncengine.runtime.laghistory`), so a console started
later, or restarted, still charts the daemon's last hour. The console also keeps the samples
its own probe takes (a sample every ``interval`` seconds, an hour of them): they give the live
cards, the snapshot ETA, and chart points newer than the newest stored one (a pipeline no
daemon records, e.g. one synced by ``sync --every``). Under the daemon a probe reads the
daemon's own metrics (no connection); standalone, it asks the source like ``syncengine
status`` does.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncengine.state.base import LagSample

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


def stored(sample: LagSample) -> Sample:
    """A stored sample as the chart reads it (its ``applied`` counts since the one before,
    not a running total: see :func:`stored_throughput`)."""
    return Sample(sample.at, sample.lag_seconds, sample.lag_bytes, sample.retained_wal_bytes)


def chart_samples(stored_samples: Sequence[LagSample], own: Sequence[Sample]) -> list[Sample]:
    """A pipeline's stored samples (oldest first), then the console's own samples newer than
    the newest stored one."""
    out = [stored(s) for s in stored_samples]
    newest = out[-1].at if out else float("-inf")
    return out + [s for s in own if s.at > newest]


def stored_throughput(samples: Sequence[LagSample], now: float, fresh: float) -> float | None:
    """Changes per second in the newest stored interval, if that ended within ``fresh``
    seconds (a daemon is recording); else None."""
    if len(samples) < 2 or now - samples[-1].at > fresh:
        return None
    last, before = samples[-1], samples[-2]
    elapsed = last.at - before.at
    return last.applied / elapsed if elapsed > 0 else None


@dataclass(frozen=True)
class Chart:
    """One series over the last hour as an SVG polyline (user units of a 600×120 box)."""

    label: str
    points: str
    peak: float | None
    count: int
    span: float = 0.0
    """Seconds from the left edge (the oldest sample, at most an hour ago) to now."""
    oldest: float | None = None
    """Unix time of the oldest point drawn."""
    width: int = 600
    height: int = 120

    def document(self, caption: str) -> dict[str, Any]:
        """What the page's script draws (:func:`lag_document`)."""
        return {
            "points": self.points,
            "peak": self.peak,
            "count": self.count,
            "span": self.span,
            "oldest": self.oldest,
            "caption": caption,
        }


def chart(
    label: str,
    samples: list[Sample],
    field: str,
    now: float | None = None,
    window: float = WINDOW,
    floor: float = 0.0,
) -> Chart:
    """``field`` of ``samples`` (``lag_seconds``, ``lag_bytes``…) scaled to its own peak, but
    to no less than ``floor`` (so 40 ms of lag is not drawn as a mountain), over the time
    sampled so far (at most ``window``: the chart fills as history builds up)."""
    now = time.time() if now is None else now
    values = [(s.at, float(v)) for s in samples if (v := getattr(s, field)) is not None]
    peak = max((v for _, v in values), default=None)
    scale = max(peak or 0.0, floor) or 1.0
    span = min(window, max(now - values[0][0], 60.0)) if values else window
    width, height = Chart.width, Chart.height
    points = [
        f"{width * (1 - (now - at) / span):.1f},{height - 4 - (height - 8) * v / scale:.1f}"
        for at, v in values
    ]
    oldest = values[0][0] if values else None
    return Chart(label, " ".join(points), peak, len(values), span, oldest)
