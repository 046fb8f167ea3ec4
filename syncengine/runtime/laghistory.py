"""The daemon's lag history: what the console's chart of the last hour (and a day back) reads.

Every pipeline's supervisor already asks its source for the lag every few seconds (for the
Prometheus gauges); every ``console.history_interval`` (10 s by default) one of those answers
is also written to the state store as a sample: lag in seconds and bytes (where the source
measures bytes: a Postgres slot), retained WAL, and the changes applied since the previous
sample; plus one row per source table that applied something since (its changes and the lag
of its last group, from the per-table counters ``status --tables`` reads), at most
:data:`MAX_TABLES`, the busiest.

Why 10 s: an hour is then 360 points on a 600-pixel-wide chart (a point every ~2 px, the
chart's resolution), a day 8,640 rows per pipeline; a spike shorter than that still shows in
the next sample's throughput. The write is one small transaction on the sampling task,
never on the apply path, committed without an fsync (a lost sample costs a chart point) and
pruned in the same transaction to ``console.history_keep`` (24 h).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from syncengine.state.base import LagSample

if TYPE_CHECKING:
    from syncengine.sources.base import SourceLag
    from syncengine.state.protocols import StateStore

INTERVAL = 10.0
KEEP = 24 * 3600.0
#: per-table rows in one sample at most (the tables that applied the most since the last one)
MAX_TABLES = 50


class Applied(Protocol):
    name: str
    rows_applied: int
    """Changes this pipeline committed since it was opened (a running total)."""


class LagRecorder:
    """Turns the supervisor's lag probes into stored samples, one per ``interval``."""

    def __init__(
        self,
        pipeline: Applied,
        state: StateStore,
        interval: float = INTERVAL,
        keep: float = KEEP,
    ) -> None:
        self.pipeline = pipeline
        self.state = state
        self.interval = interval
        self.keep = keep
        self._last: float | None = None
        self._applied = pipeline.rows_applied
        self._tables = self._table_totals()

    def _table_totals(self) -> dict[str, int]:
        return {t: s.rows_applied for t, s in self.state.table_stats(self.pipeline.name).items()}

    def due(self, now: float) -> bool:
        # a probe a little early (its own duration, timer jitter) still takes the sample
        return self._last is None or now - self._last >= self.interval * 0.95

    def observe(self, lag: SourceLag | None, now: float | None = None) -> list[LagSample]:
        """Record a sample if one is due (``lag`` None: the probe failed, the throughput is
        still known); returns what was written."""
        now = time.time() if now is None else now
        if not self.due(now):
            return []
        applied = self.pipeline.rows_applied
        samples = [
            LagSample(
                now,
                "",
                lag.lag_seconds if lag else None,
                lag.lag_bytes if lag else None,
                lag.retained_wal_bytes if lag else None,
                max(applied - self._applied, 0),
            )
        ]
        stats = self.state.table_stats(self.pipeline.name)
        totals = {t: s.rows_applied for t, s in stats.items()}
        moved = {t: n - self._tables.get(t, 0) for t, n in totals.items()}
        busiest = sorted((t for t, n in moved.items() if n > 0), key=lambda t: (-moved[t], t))
        samples += [
            LagSample(now, t, stats[t].last_lag_seconds, applied=moved[t])
            for t in busiest[:MAX_TABLES]
        ]
        self.state.add_lag_samples(self.pipeline.name, samples, self.keep, now)
        self._last, self._applied, self._tables = now, applied, totals
        return samples


def trend(samples: Sequence[LagSample]) -> dict[str, Any] | None:
    """A pipeline's stored samples (oldest first) in short, for ``status``: lag in seconds
    at the first and last sample, its peak, and the changes applied per second over them."""
    if not samples:
        return None
    lags = [s.lag_seconds for s in samples if s.lag_seconds is not None]
    span = samples[-1].at - samples[0].at
    applied = sum(s.applied for s in samples[1:])  # the first counts the time before it
    return {
        "samples": len(samples),
        "span_seconds": span,
        "first_seconds": lags[0] if lags else None,
        "last_seconds": lags[-1] if lags else None,
        "max_seconds": max(lags) if lags else None,
        "applied_per_second": applied / span if span > 0 else None,
    }
