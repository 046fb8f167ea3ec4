from __future__ import annotations

import time

from syncengine.runtime.phases import PhaseClock


def test_phase_clock_adds_up_per_phase_in_first_seen_order() -> None:
    clock = PhaseClock()
    clock.add("read", 1.5)
    with clock.timing("apply"):
        time.sleep(0.01)
    clock.add("read", 0.25)
    assert clock.seconds["read"] == 1.75
    assert 0.01 <= clock.seconds["apply"] < 1
    assert clock.summary().startswith("read 1.75 s, apply 0.0")


def test_every_addition_reaches_the_metrics_counter() -> None:
    from syncengine.runtime.metrics import Metrics

    metrics = Metrics()
    clock = PhaseClock(lambda phase, s: metrics.phase_seconds.labels("p", phase).inc(s))
    clock.add("decode", 0.5)
    clock.add("decode", 0.25)
    clock.add("apply", 1.0)
    text = metrics.render().decode()
    assert 'syncengine_phase_seconds_total{phase="decode",pipeline="p"} 0.75' in text
    assert 'syncengine_phase_seconds_total{phase="apply",pipeline="p"} 1.0' in text
