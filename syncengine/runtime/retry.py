"""Retrying transient failures: jittered exponential backoff and a circuit breaker.

Backoff spreads reconnect attempts of many pipelines (full jitter, AWS architecture blog
style). The circuit breaker stops hammering a target that keeps failing: after
``failure_threshold`` consecutive failures it opens for ``reset_after`` seconds, then lets a
single probe through (half-open); a success closes it, a failure opens it again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * self.factor**self.attempt)
        self.attempt += 1
        return self.rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0


CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
CIRCUIT_STATES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


@dataclass
class CircuitBreaker:
    failure_threshold: int = 5
    reset_after: float = 30.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    state: str = CLOSED
    opened_at: float = 0.0

    def _now(self) -> float:
        return self.clock()

    def allow(self) -> bool:
        """May a call go through now? In half-open state exactly one probe may."""
        if self.state == OPEN and self._now() - self.opened_at >= self.reset_after:
            self.state = HALF_OPEN
            return True
        return self.state == CLOSED

    def wait_time(self) -> float:
        if self.state != OPEN:
            return 0.0
        return max(0.0, self.reset_after - (self._now() - self.opened_at))

    def record_success(self) -> None:
        self.failures = 0
        self.state = CLOSED

    def record_failure(self) -> None:
        self.failures += 1
        if self.state == HALF_OPEN or self.failures >= self.failure_threshold:
            self.state = OPEN
            self.opened_at = self._now()
