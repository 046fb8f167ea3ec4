"""How fast a table is copied beside a running stream: as fast as the stream's lag allows.

A table snapshotted while the pipeline streams (an added table, ``resnapshot``) competes with
the stream for the same cores, the target's WAL and the source's walsenders. Unpaced, a 1M-row
copy beside two streaming tables on two cores doubled and tripled their lag
(docs/benchmarks-findings.md, ``pg_add_table``). The copy therefore paces itself the way gh-ost
paces its row copy against replica lag: the stream's lag in the moments before the copy began
is the baseline, and after each slice applied beside the stream the copy rests for a multiple
of that slice's time, the multiple raised while the stream's recent lag is over
:data:`LAG_RATIO` × the baseline and lowered while it is back under it. A stream with no
traffic gives no lag to compare: the copy then runs unpaced, as it does before the stream
committed enough groups to know its baseline.

Lag here is the one ``status --tables`` shows: from the newest change's source commit time to
the commit of its group. A clock offset between the hosts shifts the baseline and the recent
lag alike; the comparison adds :data:`LAG_SLACK` so a baseline of a few milliseconds does not
throttle on noise.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime

import pyarrow.compute as pc

from syncengine.changes import ChangeBatch

#: the recent lag may be this many times the baseline before the copy slows down
LAG_RATIO = 1.5
#: seconds of lag always allowed on top of the ratio (noise of a few-millisecond baseline)
LAG_SLACK = 0.010
#: seconds of groups before the copy that make the baseline, and groups it needs at least
BASELINE_SECONDS = 30.0
BASELINE_GROUPS = 10
#: seconds of groups that make "recent"
RECENT_SECONDS = 1.0
#: the rest after a slice, as a multiple of the slice's time: its bounds and step
REST_MAX = 4.0
REST_STEP = 0.5


class StreamLag:
    """The lag of the stream's last groups (seconds), with when each committed."""

    def __init__(self, keep: float = BASELINE_SECONDS) -> None:
        self.keep = keep
        self.samples: deque[tuple[float, float]] = deque()

    def add_group(self, batches: Sequence[ChangeBatch], now: float | None = None) -> None:
        """Note the lag of a committed stream group (its newest change's commit time)."""
        newest = None
        for batch in batches:
            if batch.num_rows and "_ts" in batch.data.column_names:
                value = pc.max(batch.data.column("_ts")).as_py()
                if value is not None and (newest is None or value > newest):
                    newest = value
        if isinstance(newest, datetime):
            lag = (datetime.now(UTC) - newest).total_seconds()
            self.add(max(lag, 0.0), now)

    def add(self, lag: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self.samples.append((now, lag))
        while self.samples and self.samples[0][0] < now - self.keep:
            self.samples.popleft()

    def since(self, start: float) -> list[float]:
        return [lag for at, lag in self.samples if at >= start]


class CopyPace:
    """The rest after each slice of one table's copy (see the module docstring)."""

    def __init__(self, lags: StreamLag, now: float | None = None) -> None:
        self.lags = lags
        now = time.monotonic() if now is None else now
        before = lags.since(now - BASELINE_SECONDS)
        #: the stream's median lag before the copy (None: too few groups to tell)
        self.baseline = statistics.median(before) if len(before) >= BASELINE_GROUPS else None
        #: the current rest, as a multiple of a slice's time
        self.rest = 0.0

    def after(self, took: float, now: float | None = None) -> float:
        """Seconds to rest after a slice that took ``took`` seconds."""
        now = time.monotonic() if now is None else now
        if self.baseline is None:
            return 0.0
        recent = self.lags.since(now - RECENT_SECONDS)
        if recent:
            over = statistics.median(recent) > self.baseline * LAG_RATIO + LAG_SLACK
            step = REST_STEP if over else -REST_STEP
            self.rest = min(REST_MAX, max(0.0, self.rest + step))
        return took * self.rest
