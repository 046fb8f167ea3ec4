"""A live table copy's pace (syncengine.runtime.copypace): it rests while the stream's recent
lag is over its baseline, and only then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow as pa

from syncengine.changes import ChangeBatch
from syncengine.runtime.copypace import (
    BASELINE_GROUPS,
    LAG_RATIO,
    REST_MAX,
    REST_STEP,
    CopyPace,
    StreamLag,
)


def lags(values: list[float], start: float = 0.0, every: float = 0.1) -> StreamLag:
    stream = StreamLag()
    for i, lag in enumerate(values):
        stream.add(lag, start + i * every)
    return stream


def test_the_copy_rests_while_the_stream_lags_and_stops_resting_when_it_recovers():
    stream = lags([0.020] * 50)  # 5 s of groups at 20 ms before the copy
    pace = CopyPace(stream, now=5.0)
    assert pace.baseline == 0.020
    assert pace.after(0.1, now=5.0) == 0.0  # the stream as before: no rest

    # the stream's lag triples while slices go on: once that is most of the last second, the
    # rest grows a step per slice, up to its bound
    rests = []
    for i in range(20):
        now = 5.1 + i * 0.1
        stream.add(0.060, now)
        rests.append(pace.after(0.1, now=now))
    steps = [b - a for a, b in zip(rests, rests[1:], strict=False) if b != a]
    assert rests[0] == 0.0 and steps and all(abs(d - 0.1 * REST_STEP) < 1e-9 for d in steps)
    assert rests[-1] == 0.1 * REST_MAX

    # back under the ratio: the rest shrinks to nothing again
    for i in range(30):
        now = 7.1 + i * 0.1
        stream.add(0.020 * LAG_RATIO * 0.9, now)
        rest = pace.after(0.1, now=now)
    assert rest == 0.0


def test_no_pace_without_a_baseline():
    """Too few groups before the copy (an idle stream, or a copy right after a start): the
    lag measured under the copy is no baseline, so the copy is not slowed."""
    stream = lags([0.020] * (BASELINE_GROUPS - 1))
    pace = CopyPace(stream, now=1.0)
    assert pace.baseline is None
    for i in range(20):
        stream.add(1.0, 1.0 + i * 0.1)
        assert pace.after(0.1, now=1.0 + i * 0.1) == 0.0


def test_a_group_lag_is_its_newest_change():
    now = datetime.now(UTC)
    data = pa.table(
        {
            "id": [1, 2],
            "_ts": pa.array([now - timedelta(seconds=5), now - timedelta(seconds=2)],
                            pa.timestamp("us", tz="UTC")),
        }
    )  # fmt: skip
    stream = StreamLag()
    stream.add_group([ChangeBatch("t", data, ("id",), {})], now=0.0)
    ((at, lag),) = stream.samples
    assert at == 0.0 and 2.0 <= lag < 3.0
