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
