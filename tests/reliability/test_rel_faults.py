"""Server and network faults while streaming: the daemon recovers by itself and ends consistent.

Each scenario runs ``syncengine run`` under a write load, injects one fault, and requires
(without restarting the daemon) that the target catches up key for key, that no change was
applied twice (apply-audit trigger), that ``verify`` passes and that SIGTERM still drains.
Faults use private servers (``own_pg``, ``own_mongo``) so the shared ones stay undisturbed.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable

import pytest
from pymongo import MongoClient

from tests.e2e.harness import CLI, wait_for
from tests.reliability import rel_scenario
from tests.reliability.rel_mongoload import MongoLoad, mongo_rows
from tests.reliability.rel_mongoload import seed as mongo_seed
from tests.reliability.rel_proxy import TcpProxy
from tests.reliability.rel_scenario import new_database, run_scenario
from tests.reliability.rel_support import (
    Daemon,
    apply_audit,
    compare_rows,
    install_apply_audit,
    pg_rows,
    record,
    size,
)


def via(dsn: str, port: int) -> str:
    """The same DSN, connecting through ``port`` (a proxy) instead of the server's port."""
    head, _, tail = dsn.rpartition(":")
    return f"{head}:{port}/{tail.split('/', 1)[1]}"


def test_source_postgres_restarts(tmp_path, own_pg, pg_target_dsn):
    src = own_pg.dsn(new_database(own_pg.dsn(), "src"))

    def restart_twice(daemon: Daemon) -> None:
        own_pg.restart()  # fast shutdown: walsenders are told to stop
        time.sleep(2)
        own_pg.stop("immediate")  # a crash: no shutdown checkpoint, recovery from WAL
        own_pg.start()

    figures = run_scenario(tmp_path, src, pg_target_dsn, restart_twice)
    record("fault_source_pg_restart", faults=2, **figures)


def test_target_down_while_changes_accumulate(tmp_path, own_pg, pg_dsn):
    outage = size("SYNCENGINE_OUTAGE_SECONDS", 10)
    tgt = own_pg.dsn(new_database(own_pg.dsn(), "tgt"))

    def outage_of_target(daemon: Daemon) -> None:
        own_pg.stop()
        time.sleep(outage)
        assert daemon.alive(), f"daemon gave up during a {outage}s outage:\n{daemon.tail()}"
        own_pg.start()

    figures = run_scenario(tmp_path, pg_dsn, tgt, outage_of_target)
    record("fault_target_outage", faults=1, outage_seconds=outage, **figures)


# Half-open connections need a read timeout to be noticed; waiting for one takes 90 s when it
# is missing, so the target case runs in the long suite (./scripts/reliability --long).
HALF_OPEN = pytest.param("half_open", marks=pytest.mark.slow)
# The source bounds every round trip by source.query_timeout (F7); with 5 s the daemon gives
# a frozen source connection up within about 10 s (5 s plus psycopg's 5 s cancel grace), so
# the source case runs in the quick suite.
QUICK_SOURCE_TIMEOUT = "heartbeat: 1s\n      query_timeout: 5s"


def drops_and_delay(proxy: TcpProxy, drops: int) -> Callable[[Daemon], None]:
    """Reset every connection ``drops`` times, then slow the link down for a while."""

    def fault(daemon: Daemon) -> None:
        for _ in range(drops):
            wait_for(lambda: proxy.open_connections() > 0, timeout=60)
            proxy.drop()
            time.sleep(1.5)
        proxy.set_delay(0.05)
        time.sleep(4)
        proxy.set_delay(0)

    return fault


def half_open(proxy: TcpProxy) -> Callable[[Daemon], None]:
    """Freeze the open connections (no data, no FIN/RST) and require a reconnect."""

    def fault(daemon: Daemon) -> None:
        wait_for(lambda: proxy.open_connections() > 0, timeout=60)
        time.sleep(1)
        before = proxy.accepted
        frozen = proxy.half_open()
        try:
            wait_for(lambda: proxy.accepted > before, timeout=90)
        except AssertionError:
            raise AssertionError(
                f"{frozen} connection(s) went silent; no reconnect within 90 s "
                f"(no read/statement timeout?)\n{daemon.tail()}"
            ) from None

    return fault


def noticed(fault: Callable[[Daemon], None]) -> Callable[[Daemon], None]:
    """``fault``, then require that the daemon gave the silent source connection up (a
    reconnect alone could be psycopg's cancel request)."""

    def run(daemon: Daemon) -> None:
        fault(daemon)
        try:
            wait_for(lambda: "presumed lost" in daemon.cli.daemon_logs(), timeout=60)
        except AssertionError:
            raise AssertionError(f"silent source connection not noticed\n{daemon.tail()}") from None

    return run


@pytest.mark.parametrize("kind", ["drop_delay", "half_open"])
def test_source_connection_faults(tmp_path, own_pg, pg_target_dsn, kind, monkeypatch):
    if kind == "half_open":
        config = rel_scenario.CONFIG.replace("heartbeat: 1s", QUICK_SOURCE_TIMEOUT)
        assert config != rel_scenario.CONFIG
        monkeypatch.setattr(rel_scenario, "CONFIG", config)
    src = own_pg.dsn(new_database(own_pg.dsn(), "src"))
    proxy = TcpProxy(own_pg.port).start()
    fault = drops_and_delay(proxy, 3) if kind == "drop_delay" else noticed(half_open(proxy))
    try:
        figures = run_scenario(tmp_path, src, pg_target_dsn, fault, daemon_src=via(src, proxy.port))
    finally:
        proxy.close()
    record(f"fault_source_network_{kind}", faults=4 if kind == "drop_delay" else 1, **figures)


@pytest.mark.parametrize("kind", ["drop_delay", HALF_OPEN])
def test_target_connection_faults(tmp_path, own_pg, pg_dsn, kind):
    tgt = own_pg.dsn(new_database(own_pg.dsn(), "tgt"))
    proxy = TcpProxy(own_pg.port).start()
    fault = drops_and_delay(proxy, 2) if kind == "drop_delay" else half_open(proxy)
    try:
        figures = run_scenario(tmp_path, pg_dsn, tgt, fault, daemon_tgt=via(tgt, proxy.port))
    finally:
        proxy.close()
    record(f"fault_target_network_{kind}", faults=3 if kind == "drop_delay" else 1, **figures)


MONGO_TO_PG = textwrap.dedent(
    """
    state: ${SYNCENGINE_STATE}
    pipelines:
      mfault:
        source:
          type: mongo
          uri: "${MONGO_URI}"
          database: app
          collections: [acct, ledger]
          query_timeout: ${QUERY_TIMEOUT}
        target: {type: postgres, dsn: "${TGT_DSN}"}
        batch: {max_rows: 500, max_wait: 100ms}
    """
)


def run_mongo_scenario(
    tmp_path, mongo, pg_target_dsn, fault, daemon_uri=None, query_timeout="60s"
) -> dict[str, int]:
    """``run_scenario`` for Mongo → Postgres: seed, stream under load, inject ``fault``, and
    require the target to catch up without a restart, nothing applied twice, ``verify`` clean."""
    with MongoClient(mongo.uri) as client:
        client.drop_database("app")  # the server lives for the module
    mongo_seed(mongo.uri, "app", 2_000)
    env = {"MONGO_URI": daemon_uri or mongo.uri, "TGT_DSN": pg_target_dsn}
    cli = CLI(tmp_path, MONGO_TO_PG, {**env, "QUERY_TIMEOUT": query_timeout})
    daemon = Daemon(cli).start()

    def check():
        return compare_rows(
            mongo_rows(mongo.uri, "app", "acct"),
            pg_rows(pg_target_dsn, "acct", "_id", ["counter", "note", "md5(big)"]),
        )

    wait_for(lambda: check().ok(), timeout=90)
    install_apply_audit(pg_target_dsn, "acct", "_id", "counter")
    load = MongoLoad(mongo.uri, "app", first_id=10_000, pause=0.01)
    load.start()
    try:
        time.sleep(2)
        fault(daemon)
        time.sleep(2)
    finally:
        load.stop()
    try:
        took = wait_for(lambda: check().ok(), timeout=150, interval=0.5)
    except AssertionError:
        raise AssertionError(f"not consistent: {check().summary()}\n{daemon.tail()}") from None
    assert daemon.alive(), daemon.tail()
    assert daemon.stop() == 0, daemon.tail()
    writes = apply_audit(pg_target_dsn, "acct")
    assert writes.duplicated == 0, f"applied twice: {writes}"
    verify = cli.run("verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    return {"source_ops": sum(load.ops.values()), "recovery_seconds": int(took)}


def test_mongo_source_restarts(tmp_path, own_mongo, pg_target_dsn):
    """A clean restart, then a SIGKILL (``own_mongo`` writes its log at every commit, see
    F19: otherwise the test server loses streamed writes, which MongoDB never streams)."""

    def restart_twice(daemon: Daemon) -> None:
        own_mongo.restart()
        time.sleep(2)
        own_mongo.kill()  # no clean shutdown this time
        own_mongo.start()

    figures = run_mongo_scenario(tmp_path, own_mongo, pg_target_dsn, restart_twice)
    record("fault_mongo_restart", faults=2, **figures)


def test_mongo_source_connection_half_open(tmp_path, own_mongo, pg_target_dsn):
    """The Mongo counterpart of F7: without a read deadline PyMongo waits on a silent
    connection forever (the change stream's poll, a lookup); ``query_timeout`` gives it up and
    the change stream resumes on a new connection."""
    proxy = TcpProxy(own_mongo.port).start()
    daemon_uri = own_mongo.uri.replace(f":{own_mongo.port}/", f":{proxy.port}/")
    try:
        figures = run_mongo_scenario(
            tmp_path, own_mongo, pg_target_dsn, half_open(proxy), daemon_uri, query_timeout="5s"
        )
    finally:
        proxy.close()
    record("fault_mongo_network_half_open", faults=1, **figures)
