"""Reaching Temporal: ``apply`` gives up after its patience with exit code 3 and a message that
names the address; a worker waits until stopped. No server: nothing listens on the port."""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("temporalio", reason="the cluster extra is not installed")

from syncengine.cluster import ClusterUnavailable  # noqa: E402
from syncengine.cluster.service import connect  # noqa: E402
from syncengine.config.cluster import ClusterConfig  # noqa: E402
from tests.servers import free_port  # noqa: E402


def nowhere() -> ClusterConfig:
    return ClusterConfig(engine="temporal", address=f"127.0.0.1:{free_port()}")


def test_unreachable_service_is_exit_3_after_the_patience():
    cluster = nowhere()
    started = time.monotonic()
    with pytest.raises(ClusterUnavailable, match=f"cannot reach Temporal at {cluster.address}"):
        asyncio.run(connect(cluster, patience=2.0))
    assert time.monotonic() - started < 30
    assert ClusterUnavailable.exit_code == 3


def test_a_waiting_worker_stops_when_asked():
    async def scenario() -> object:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.5, stop.set)
        return await connect(nowhere(), float("inf"), stop)

    started = time.monotonic()
    assert asyncio.run(scenario()) is None
    assert time.monotonic() - started < 15
