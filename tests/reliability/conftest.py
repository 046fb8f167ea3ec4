"""Private servers for the fault scenarios.

Restarting or stopping the shared session servers would disturb every other test, so fault
scenarios get their own PostgreSQL cluster and Mongo-compatible server (module scope: started
once per test module, destroyed at its end). Against external servers
(``SYNCENGINE_TEST_PG_DSN`` / ``SYNCENGINE_TEST_MONGO_URI``) these scenarios are skipped:
we must not restart someone else's server.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.reliability.rel_support import kill_leftovers
from tests.servers import MongoServer, PostgresServer


@pytest.fixture(autouse=True)
def _no_daemon_outlives_its_test() -> Iterator[None]:
    yield
    kill_leftovers()


@pytest.fixture(scope="module")
def own_pg() -> Iterator[PostgresServer]:
    if os.environ.get("SYNCENGINE_TEST_PG_DSN"):
        pytest.skip("fault scenarios restart their own server; not run against an external one")
    server = PostgresServer(settings={"wal_sender_timeout": "10s"}).start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="module")
def own_mongo() -> Iterator[MongoServer]:
    if os.environ.get("SYNCENGINE_TEST_MONGO_URI"):
        pytest.skip("fault scenarios restart their own server; not run against an external one")
    # SIGKILLed by the restart scenario: without a log write at every commit the test server
    # loses its last commits, though its change stream already showed them (F19)
    server = MongoServer(sync_on_commit=True).start()
    try:
        yield server
    finally:
        server.destroy()
