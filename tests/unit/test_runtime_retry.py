from __future__ import annotations

import random

from syncengine.runtime.retry import CLOSED, HALF_OPEN, OPEN, Backoff, CircuitBreaker


def test_backoff_grows_with_jitter_and_caps():
    backoff = Backoff(initial=1, maximum=8, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(6)]
    ceilings = [1, 2, 4, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    backoff.reset()
    assert backoff.next_delay() <= 1


def test_circuit_opens_then_half_opens_for_one_probe():
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=3, reset_after=10, clock=lambda: now[0])
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == OPEN and not breaker.allow()
    now[0] = 10.5
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert not breaker.allow(), "only one probe while half-open"
    breaker.record_failure()
    assert breaker.state == OPEN
    now[0] = 21
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == CLOSED and breaker.allow()
