"""The daemon's circuit breaker counts target failures, decided by the error's class (the
target side of the error table), never by the module an exception class lives in."""

from __future__ import annotations

import json

import pytest
from psycopg import errors as pg_errors

from syncengine.config.loader import parse_config
from syncengine.errors import RetriableError, SourceUnavailable, TargetUnavailable
from syncengine.runtime.daemon import Daemon, PipelineHealth
from syncengine.runtime.retry import CircuitBreaker
from syncengine.state import SQLiteStateStore
from syncengine.targets.postgres.errors import translate


@pytest.fixture
def daemon() -> Daemon:
    config = parse_config(
        json.dumps(
            {
                "pipelines": {
                    "p": {
                        "source": {"type": "postgres", "dsn": "postgresql://h/db", "tables": ["t"]},
                        "target": {"type": "parquet", "path": "/tmp/unused"},
                    }
                }
            }
        )
    )
    return Daemon(config, ["p"], SQLiteStateStore(":memory:"))


def _failures(daemon: Daemon, exc: BaseException) -> int:
    breaker, health = CircuitBreaker(), PipelineHealth()
    daemon._retrying("p", health, exc, breaker)
    assert health.state == "retrying" and type(exc).__name__ in str(health.last_error)
    return breaker.failures


def test_an_unreachable_target_counts_against_the_breaker(daemon: Daemon) -> None:
    assert _failures(daemon, TargetUnavailable("down")) == 1
    # as the Postgres target translates a server going away (57P01, target side)
    assert _failures(daemon, translate(pg_errors.lookup("57P01")("bye"), "apply")) == 1


def test_other_transient_failures_do_not(daemon: Daemon) -> None:
    assert _failures(daemon, SourceUnavailable("source down")) == 0
    # a serialization failure at the target is retried, but the target is reachable
    assert _failures(daemon, translate(pg_errors.lookup("40001")("retry"), "apply")) == 0
    assert _failures(daemon, RetriableError("transient")) == 0
    assert _failures(daemon, ConnectionResetError("raw socket error")) == 0
