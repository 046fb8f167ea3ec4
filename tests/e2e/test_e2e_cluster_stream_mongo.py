"""Cluster mode into a Mongo target (with transactions): a pipeline's stream as one workflow on
a real Temporal dev server, fenced by an epoch document committed in every target transaction.

* SIGKILL under writes: the worker holding the stream dies while writers keep incrementing
  per-key counters at the Postgres source; the other worker takes the stream over, the
  collection ends equal to the source, and no counter is ever seen going backwards in it.
* A paused worker: the first worker stops itself inside a commit's transaction (the test's
  fault point, SIGSTOP), its successor claims the pipeline past the heartbeat timeout, and when
  the paused worker is continued its commit is refused by the stale epoch and rolled back; the
  change is applied once, by the successor.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
from pymongo import MongoClient

from tests.e2e.harness import CLI, execute, rows, wait_for
from tests.e2e.test_e2e_cluster_stream import (
    QUERY,
    Writers,
    fill,
    stop_workers,
    stream_holder,
)

pytest.importorskip(
    "temporalio", reason="the cluster extra is not installed (pip install -e '.[cluster]')"
)


#: a server of each test's own (see ``throwaway_mongo``): a worker SIGSTOPped inside a
#: transaction, and a SIGKILLed one, leave transactions only SecantusDB's reaper ends, and its
#: ``drop_database`` has stalled for minutes after that; CI once timed out at this file
pytestmark = pytest.mark.own_mongo_server


def config(task_queue: str, pipeline: str) -> str:
    return f"""
state: ${{SYNCENGINE_STATE}}
cluster: {{engine: temporal, address: '${{TEMPORAL_ADDRESS}}', task_queue: {task_queue},
          heartbeat: 3s}}
pipelines:
  {pipeline}:
    source: {{type: postgres, dsn: "${{SRC_DSN}}", tables: [public.counters]}}
    target: {{type: mongo, uri: "${{MONGO_URI}}", database: "${{MONGO_DB}}"}}
    batch: {{max_rows: 200, max_wait: 100ms}}
"""


def counters(uri: str, database: str) -> list[tuple[int, int]]:
    with MongoClient(uri) as client:
        docs = client[database]["counters"].find({}, {"_id": 0, "id": 1, "n": 1})
        return sorted((int(d["id"]), int(d["n"])) for d in docs)


def converged(src: str, uri: str, database: str) -> bool:
    return counters(uri, database) == [(int(i), int(n)) for i, n in rows(src, QUERY)]


class MongoWatcher:
    """Samples the collection while the stream runs: no key's counter may ever go down."""

    def __init__(self, uri: str, database: str) -> None:
        self.uri, self.database = uri, database
        self.stop = threading.Event()
        self.problems: list[str] = []
        self.samples = 0
        self.thread = threading.Thread(target=self._watch)

    def _watch(self) -> None:
        seen: dict[int, int] = {}
        while not self.stop.is_set():
            for key, n in counters(self.uri, self.database):
                if n < seen.get(key, -1):
                    self.problems.append(f"key {key}: {seen[key]} -> {n}")
                seen[key] = max(n, seen.get(key, -1))
            self.samples += 1
            time.sleep(0.1)

    def __enter__(self) -> MongoWatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def epoch_of(uri: str, database: str, pipeline: str) -> int:
    with MongoClient(uri) as client:
        found = client[database]["_syncengine_epochs"].find_one({"_id": pipeline})
    return int(found["epoch"]) if found else 0


def environment(temporal, pg_dsn: str, mongo_uri: str, mongo_db: str) -> dict[str, str]:
    return {
        "SRC_DSN": pg_dsn,
        "MONGO_URI": mongo_uri,
        "MONGO_DB": mongo_db,
        "TEMPORAL_ADDRESS": temporal.address,
    }


def test_mongo_stream_worker_killed_under_writes_another_takes_over(
    tmp_path, temporal, pg_dsn, mongo_uri, mongo_db
):
    fill(pg_dsn)
    cli = CLI(
        tmp_path,
        config("mongo-kill", "mkilled"),
        environment(temporal, pg_dsn, mongo_uri, mongo_db),
    )
    workers = []
    for i in range(2):
        cli.env = {**cli.env, "SYNCENGINE_STATE": str(tmp_path / f"worker{i}.db")}
        workers.append(cli.start("worker"))
    try:
        assert "mkilled: stream started" in cli.run("apply").stdout
        wait_for(lambda: converged(pg_dsn, mongo_uri, mongo_db), timeout=120)  # the backfill
        with MongoWatcher(mongo_uri, mongo_db) as watcher:
            with Writers(pg_dsn):
                time.sleep(3)
                identity, _ = stream_holder(temporal.address, "mkilled")
                victim = next(w for w in workers if identity.startswith(f"{w.pid}@"))
                victim.send_signal(signal.SIGKILL)
                victim.wait(30)
                survivor, attempt = stream_holder(temporal.address, "mkilled", not_by=identity)
                assert attempt >= 2
                execute(pg_dsn, "UPDATE counters SET n = n + 1000000 WHERE id = 1")
                wait_for(lambda: counters(mongo_uri, mongo_db)[0][1] >= 1_000_000, timeout=120)
                time.sleep(2)  # more writes after the takeover
            wait_for(lambda: converged(pg_dsn, mongo_uri, mongo_db), timeout=120)
        assert watcher.samples > 20
        assert watcher.problems == []
        assert epoch_of(mongo_uri, mongo_db, "mkilled") >= 2
        assert any(survivor.startswith(f"{w.pid}@") for w in workers if w is not victim)
    finally:
        stop_workers(workers)


def test_mongo_paused_worker_late_commit_refused(tmp_path, temporal, pg_dsn, mongo_uri, mongo_db):
    fill(pg_dsn)
    env = environment(temporal, pg_dsn, mongo_uri, mongo_db)
    cli = CLI(tmp_path, config("mongo-pause", "mpaused"), env)
    cli.env = {**cli.env, "SYNCENGINE_STATE": str(tmp_path / "worker0.db")}
    workers = [cli.start("worker")]
    try:
        assert "mpaused: stream started" in cli.run("apply").stdout
        wait_for(lambda: converged(pg_dsn, mongo_uri, mongo_db), timeout=120)
        identity, _ = stream_holder(temporal.address, "mpaused")
        # a second worker that stops itself inside its next commit's transaction
        cli.env = {
            **cli.env,
            "SYNCENGINE_STATE": str(tmp_path / "worker1.db"),
            "SYNCENGINE_FAULT": "mongo.before_commit:stop",
        }
        sleeper = cli.start("worker")
        workers.append(sleeper)
        cli.env.pop("SYNCENGINE_FAULT")
        time.sleep(2)  # it polls the task queue
        workers[0].send_signal(signal.SIGKILL)  # the stream moves to the sleeper
        workers[0].wait(30)
        stream_holder(temporal.address, "mpaused", not_by=identity)
        with MongoWatcher(mongo_uri, mongo_db) as watcher, Writers(pg_dsn) as writers:
            wait_for(lambda: _stopped(sleeper.pid), timeout=60)  # inside the commit, stopped
            stopped_epoch = epoch_of(mongo_uri, mongo_db, "mpaused")
            # a third worker takes the stream over past the 3 s heartbeat timeout. Its claim
            # first ends the sessions earlier attempts recorded (targets/mongo/sessions.py):
            # the stopped transaction, which held the epoch document, is aborted. (Without
            # that the claim waited for the server to reap it: 60 s on mongod, and never on
            # the test server, which reaps only when a transaction comes by.)
            cli.env = {**cli.env, "SYNCENGINE_STATE": str(tmp_path / "worker2.db")}
            workers.append(cli.start("worker"))
            wait_for(lambda: epoch_of(mongo_uri, mongo_db, "mpaused") > stopped_epoch, 150)
            time.sleep(3)  # the successor applies newer changes
            sleeper.send_signal(signal.SIGCONT)  # its transaction is gone; nothing of it lands
            wait_for(lambda: _ended(cli.daemon_logs(), stopped_epoch), 60)
            time.sleep(2)
        assert writers.writes > 100
        wait_for(lambda: converged(pg_dsn, mongo_uri, mongo_db), timeout=120)
        assert watcher.problems == []  # a late commit of the sleeper would move keys back
        assert watcher.samples > 20
    finally:
        stop_workers(workers)


def _ended(logs: str, epoch: int) -> bool:
    """The stopped attempt ended without committing: refused by the epoch check, or stopped
    by its cancellation before it tried again (its transaction aborted meanwhile)."""
    return f"fencing epoch {epoch} is stale" in logs or f"stream stopped (epoch {epoch})" in logs


def _stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "T"
