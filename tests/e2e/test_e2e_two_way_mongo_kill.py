"""Two-way Postgres ↔ Mongo under load: one writer per side on hot keys (updates, inserts,
deletes) while the daemon is SIGKILLed a few times; once the writers stop, both sides hold
the same rows (compared through the type mapping), conflicts are audited and the engine's
applied-change counters stop growing (no ping-pong)."""

from __future__ import annotations

import random
import subprocess
import threading
import time

import pytest
from bson import Int64
from pymongo import MongoClient
from pymongo.errors import DuplicateKeyError

from tests.e2e.harness import CLI, execute, rows
from tests.e2e.test_e2e_two_way import audit
from tests.e2e.test_e2e_two_way_kill import hammer, settle, writer
from tests.e2e.test_e2e_two_way_mongo import SNAPSHOT, TABLE, documents, make_cli

#: --runslow only: after this file's load the test server (SecantusDB) has stalled in the
#: fixture's drop_database for over ten minutes, which hangs the whole suite, and the
#: prefer-target case diverged once in six runs (docs/benchmarks-findings.md F47,
#: docs/reliability-findings.md R23); both are open (issue 20)
pytestmark = pytest.mark.slow

HOT = 40


def mongo_writer(uri: str, db: str, stop: threading.Event, seed: int) -> int:
    """Random single-document writes on hot keys until ``stop``; returns how many."""
    rng = random.Random(seed)
    done = 0
    with MongoClient(uri) as client:
        items = client[db]["items"]
        while not stop.is_set():
            key = Int64(rng.randint(1, HOT))
            roll = rng.random()
            if roll < 0.7:
                items.update_one({"_id": key}, {"$set": {"name": f"b{done}"}, "$inc": {"qty": 1}})
            elif roll < 0.85:
                try:
                    items.insert_one({"_id": key, "name": f"b-new{done}", "qty": 0})
                except DuplicateKeyError:
                    pass
            else:
                items.delete_one({"_id": key})
            done += 1
            time.sleep(rng.uniform(0.001, 0.02))
    return done


def differences(src: str, uri: str, db: str) -> str:
    a, b = set(rows(src, SNAPSHOT)), set(documents(uri, db))
    return f"only in Postgres {sorted(a - b)}, only in Mongo {sorted(b - a)}"


@pytest.mark.parametrize(
    "conflicts", ["{prefer: source}", "{prefer: target}", "{strategy: timestamp}"]
)
def test_two_writers_and_kills_converge_without_ping_pong(
    tmp_path, pg_dsn, mongo_uri, mongo_db, conflicts
):
    execute(
        pg_dsn, TABLE, f"INSERT INTO items SELECT i, 'n', 0, now() FROM generate_series(1, {HOT}) i"
    )
    cli = make_cli(tmp_path, pg_dsn, mongo_uri, mongo_db, conflicts)
    cli.run("sync", "--once")  # the forward backfill, then both stream
    writers = [
        lambda stop: writer(pg_dsn, "a", stop, 1),
        lambda stop: mongo_writer(mongo_uri, mongo_db, stop, 2),
    ]
    daemon, port, counts = hammer(cli, writers)
    try:
        assert sum(counts) > 200, counts
        same = lambda: rows(pg_dsn, SNAPSHOT) == documents(mongo_uri, mongo_db)  # noqa: E731

        def explain() -> None:
            raise AssertionError(differences(pg_dsn, mongo_uri, mongo_db))

        settle(port, same, explain)
        # writers on both sides of the same hot keys: conflicts were met, and decided in audit
        assert audit(cli), "no conflict audited"
    finally:
        stopped(cli, daemon)


def stopped(cli: CLI, daemon: subprocess.Popen[str]) -> None:
    """SIGTERM stops the daemon with exit 0 within a minute; otherwise it is killed and the
    tail of its logs says why."""
    try:
        code = cli.stop(daemon)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait(30)
        code = None
    tail = "\n".join(cli.daemon_logs().splitlines()[-80:])
    assert code == 0, f"the daemon did not stop cleanly ({code}):\n{tail}"
