"""Cluster mode: a pipeline's stream as one workflow on a real Temporal dev server, with worker
processes killed and paused under it.

* SIGKILL under writes: the worker holding the stream dies while writers keep incrementing
  per-key counters at the source; the other worker takes the stream over (its activity's next
  attempt, under the survivor's identity), the target ends equal to the source, no counter is
  ever seen going backwards at the target, and the slot's confirmed position never passes the
  checkpoint the target committed.
* SIGSTOP past the heartbeat timeout, then SIGCONT: the paused worker was mid-commit (held on a
  row lock the test holds in the target, so the pause lands inside the transaction for certain);
  its successor claims the pipeline meanwhile, and the paused worker's late commit is refused
  by the fencing epoch and rolled back. The change is then applied once, by the successor.
* ``apply`` reconciles: started, running (unchanged), updated (config edited: the workflow
  continues as new), stopped (pipeline removed); ``status`` shows the workflows' state.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import threading
import time
from pathlib import Path

import psycopg
import pytest

from syncengine.sources.postgres.source import position_lsn
from tests.e2e.harness import CLI, execute, rows, wait_for

temporalio = pytest.importorskip(
    "temporalio", reason="the cluster extra is not installed (pip install -e '.[cluster]')"
)
from temporalio.client import Client  # noqa: E402

KEYS = 40
TABLE = "CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL)"
QUERY = "SELECT id, n FROM counters ORDER BY id"


def config(
    task_queue: str, pipelines: tuple[str, ...], max_rows: int = 200, extra: str = ""
) -> str:
    """Workflow IDs are per pipeline name in the one namespace: each test names its own."""
    body = "".join(
        f"""
  {name}:
    source: {{type: postgres, dsn: "${{SRC_DSN}}", tables: [public.counters]}}
    target: {{type: postgres, dsn: "${{TGT_DSN}}"}}
    batch: {{max_rows: {max_rows}, max_wait: 100ms}}"""
        for name in pipelines
    )
    cluster = f"{{engine: temporal, address: '${{TEMPORAL_ADDRESS}}', task_queue: {task_queue}, "
    cluster += f"heartbeat: 3s{extra}}}"
    return f"state: ${{SYNCENGINE_STATE}}\ncluster: {cluster}\npipelines:{body}\n"


def start_workers(cli: CLI, tmp_path: Path, n: int) -> list:
    """``n`` worker processes, each with its own state file (as on separate machines)."""
    workers = []
    for i in range(n):
        cli.env = {**cli.env, "SYNCENGINE_STATE": str(tmp_path / f"worker{i}.db")}
        workers.append(cli.start("worker"))
    return workers


def stop_workers(workers: list) -> None:
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
    for proc in workers:
        proc.wait(60)


def stream_holder(address: str, pipeline: str, not_by: str | None = None) -> tuple[str, int]:
    """(worker identity, attempt) of the started stream activity; with ``not_by``: once an
    attempt by another worker than that one started."""

    async def poll() -> tuple[str, int]:
        client = await Client.connect(address)
        handle = client.get_workflow_handle(f"syncengine-stream-{pipeline}")
        while True:
            for pending in (await handle.describe()).raw_description.pending_activities:
                who = str(pending.last_worker_identity)
                if (
                    pending.activity_id == "stream"
                    and who
                    and pending.last_started_time.seconds
                    and (not_by is None or who != not_by)
                ):
                    return who, pending.attempt
            await asyncio.sleep(0.2)

    return asyncio.run(asyncio.wait_for(poll(), 120))


def epoch_of(dsn: str, pipeline: str) -> int:
    found = rows(dsn, "SELECT epoch FROM _syncengine.epochs WHERE pipeline = %s", (pipeline,))
    return int(found[0][0]) if found else 0


class Writers:
    """Threads incrementing random keys' counters at the source, one transaction each."""

    def __init__(self, dsn: str, threads: int = 2) -> None:
        self.dsn = dsn
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._write, args=(i,)) for i in range(threads)]
        self.writes = 0

    def _write(self, seed: int) -> None:
        pick = random.Random(seed)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop.is_set():
                conn.execute(
                    "UPDATE counters SET n = n + 1 WHERE id = %s", (pick.randint(1, KEYS),)
                )
                self.writes += 1
                time.sleep(0.003)

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


class Watcher:
    """Samples the target while the stream runs: every key's counter must never go down,
    and the slot's confirmed position (read first) must never pass the checkpoint the target
    committed (read after it: a checkpoint only moves forward)."""

    def __init__(self, src: str, tgt: str, pipeline: str) -> None:
        self.src, self.tgt, self.pipeline = src, tgt, pipeline
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch)
        self.problems: list[str] = []
        self.samples = 0

    def _watch(self) -> None:
        seen: dict[int, int] = {}
        with (
            psycopg.connect(self.src, autocommit=True) as src,
            psycopg.connect(self.tgt, autocommit=True) as tgt,
        ):
            while not self.stop.is_set():
                confirmed = src.execute(
                    "SELECT (confirmed_flush_lsn - '0/0'::pg_lsn)::bigint "
                    "FROM pg_replication_slots WHERE slot_name = %s",
                    (f"syncengine_{self.pipeline}",),
                ).fetchone()
                checkpoint = tgt.execute(
                    "SELECT position FROM _syncengine.checkpoints WHERE pipeline = %s",
                    (self.pipeline,),
                ).fetchone()
                if confirmed and confirmed[0] is not None and checkpoint:
                    if confirmed[0] > position_lsn(checkpoint[0]):
                        self.problems.append(f"slot at {confirmed[0]} past {checkpoint[0]}")
                for key, n in tgt.execute("SELECT id, n FROM counters").fetchall():
                    if n < seen.get(key, 0):
                        self.problems.append(f"key {key} went back from {seen[key]} to {n}")
                    seen[key] = n
                self.samples += 1
                time.sleep(0.1)

    def __enter__(self) -> Watcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def fill(dsn: str) -> None:
    execute(dsn, TABLE, f"INSERT INTO counters SELECT g, 0 FROM generate_series(1, {KEYS}) g")


def converged(src: str, tgt: str) -> bool:
    return rows(tgt, QUERY) == rows(src, QUERY)


def test_stream_worker_killed_under_writes_another_takes_over(
    tmp_path, temporal, pg_dsn, pg_target_dsn
):
    fill(pg_dsn)
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "TEMPORAL_ADDRESS": temporal.address}
    cli = CLI(tmp_path, config("kill-stream", ("killed",)), env)
    workers = start_workers(cli, tmp_path, 2)
    try:
        assert "killed: stream started (syncengine-stream-killed)" in cli.run("apply").stdout
        wait_for(lambda: converged(pg_dsn, pg_target_dsn), timeout=120)  # the backfill
        with Watcher(pg_dsn, pg_target_dsn, "killed") as watcher:
            with Writers(pg_dsn):
                time.sleep(3)
                identity, _ = stream_holder(temporal.address, "killed")
                victim = next(w for w in workers if identity.startswith(f"{w.pid}@"))
                victim.send_signal(signal.SIGKILL)
                victim.wait(30)
                survivor, attempt = stream_holder(temporal.address, "killed", not_by=identity)
                assert attempt >= 2
                assert any(survivor.startswith(f"{w.pid}@") for w in workers if w is not victim)
                # the survivor streams: a write made now reaches the target
                marker = time.time()
                execute(pg_dsn, "UPDATE counters SET n = n + 1000000 WHERE id = 1")
                wait_for(lambda: rows(pg_target_dsn, QUERY)[0][1] >= 1_000_000, timeout=120)
                time.sleep(max(0.0, 3 - (time.time() - marker)))  # more writes after it
            wait_for(lambda: converged(pg_dsn, pg_target_dsn), timeout=120)
        assert watcher.samples > 20
        assert watcher.problems == []
        assert epoch_of(pg_target_dsn, "killed") >= 2
        status = json.loads(cli.run("status", "--json").stdout)
        assert status[0]["cluster_state"] == "running"
        assert status[0]["cluster_worker"] == survivor
    finally:
        stop_workers(workers)


def test_paused_worker_late_commit_refused(tmp_path, temporal, pg_dsn, pg_target_dsn):
    fill(pg_dsn)
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "TEMPORAL_ADDRESS": temporal.address}
    cli = CLI(tmp_path, config("pause-stream", ("paused",)), env)
    workers = start_workers(cli, tmp_path, 2)
    holder = psycopg.connect(pg_target_dsn)
    try:
        assert "paused: stream started" in cli.run("apply").stdout
        wait_for(lambda: converged(pg_dsn, pg_target_dsn), timeout=120)
        identity, _ = stream_holder(temporal.address, "paused")
        sleeper = next(w for w in workers if identity.startswith(f"{w.pid}@"))
        # the snapshot's chunks converge before the stream attempt claims the pipeline
        wait_for(lambda: epoch_of(pg_target_dsn, "paused") > 0, timeout=60)
        first_epoch = epoch_of(pg_target_dsn, "paused")

        holder.execute("UPDATE counters SET n = n WHERE id = 5")  # locked, not committed
        execute(pg_dsn, "UPDATE counters SET n = 7 WHERE id = 5")
        wait_for(
            lambda: rows(
                pg_target_dsn,
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'",
            ),
            timeout=60,
        )  # the stream's group waits inside its transaction
        sleeper.send_signal(signal.SIGSTOP)
        # past the 3 s heartbeat timeout the other worker's attempt claims the pipeline
        stream_holder(temporal.address, "paused", not_by=identity)
        wait_for(lambda: epoch_of(pg_target_dsn, "paused") > first_epoch, timeout=60)
        holder.rollback()  # the paused worker's group could go on now, and commit
        time.sleep(1)
        sleeper.send_signal(signal.SIGCONT)
        wait_for(lambda: f"fencing epoch {first_epoch} is stale" in cli.daemon_logs(), timeout=60)
        wait_for(lambda: converged(pg_dsn, pg_target_dsn), timeout=120)
    finally:
        holder.close()
        stop_workers(workers)
    assert "paused: commit refused" in cli.daemon_logs()


def test_apply_starts_updates_and_stops_streams(tmp_path, temporal, pg_dsn, pg_target_dsn):
    fill(pg_dsn)
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "TEMPORAL_ADDRESS": temporal.address}
    cli = CLI(tmp_path, config("apply-stream", ("applied",)), env)
    workers = start_workers(cli, tmp_path, 1)
    address = temporal.address
    try:
        assert "applied: stream started" in cli.run("apply").stdout
        wait_for(lambda: converged(pg_dsn, pg_target_dsn), timeout=120)
        assert "applied: stream running" in cli.run("apply").stdout  # unchanged: left alone
        first_run = asyncio.run(_run_id(address, "applied"))

        # workers read the edited file at their next stream attempt
        cli.config.write_text(config("apply-stream", ("applied",), max_rows=50))
        assert "applied: stream updated" in cli.run("apply").stdout
        wait_for(lambda: asyncio.run(_run_id(address, "applied")) != first_run, timeout=60)
        execute(pg_dsn, "UPDATE counters SET n = 3 WHERE id = 3")
        wait_for(lambda: converged(pg_dsn, pg_target_dsn), timeout=60)
        assert "applied: stream running" in cli.run("apply").stdout

        cli.config.write_text(config("apply-stream", ("applied2",)))
        done = cli.run("apply").stdout
        assert "applied2: stream started" in done and "applied: stream stopped" in done
        wait_for(lambda: asyncio.run(_status(address, "applied")) == "COMPLETED", timeout=60)
        status = json.loads(cli.run("status", "--json").stdout)
        assert [(s["pipeline"], s["cluster_state"]) for s in status] == [("applied2", "running")]
    finally:
        stop_workers(workers)


def test_stream_slice_ends_and_the_workflow_continues_as_new(
    tmp_path, temporal, pg_dsn, pg_target_dsn
):
    """After ``stream_slice`` the activity drains and ends, the workflow continues as new (a
    new run: its history starts again) and the next attempt claims a new epoch and streams on
    from the checkpoint."""
    fill(pg_dsn)
    env = {"SRC_DSN": pg_dsn, "TGT_DSN": pg_target_dsn, "TEMPORAL_ADDRESS": temporal.address}
    cli = CLI(tmp_path, config("slice-stream", ("sliced",), extra=", stream_slice: 10s"), env)
    workers = start_workers(cli, tmp_path, 1)
    address = temporal.address
    try:
        assert "sliced: stream started" in cli.run("apply").stdout
        wait_for(lambda: converged(pg_dsn, pg_target_dsn), timeout=120)
        wait_for(lambda: epoch_of(pg_target_dsn, "sliced") > 0, timeout=60)  # it streams
        first_run, first_epoch = (
            asyncio.run(_run_id(address, "sliced")),
            epoch_of(pg_target_dsn, "sliced"),
        )
        wait_for(lambda: asyncio.run(_run_id(address, "sliced")) != first_run, timeout=60)
        wait_for(lambda: epoch_of(pg_target_dsn, "sliced") > first_epoch, timeout=60)
        execute(pg_dsn, "UPDATE counters SET n = 9 WHERE id = 9")
        wait_for(lambda: converged(pg_dsn, pg_target_dsn), timeout=60)
        assert "sliced: stream running" in cli.run("apply").stdout  # same config: left alone
    finally:
        stop_workers(workers)
    assert "sliced: stream slice over" in cli.daemon_logs()


async def _run_id(address: str, pipeline: str) -> str:
    client = await Client.connect(address)
    described = await client.get_workflow_handle(f"syncengine-stream-{pipeline}").describe()
    return described.run_id


async def _status(address: str, pipeline: str) -> str:
    client = await Client.connect(address)
    described = await client.get_workflow_handle(f"syncengine-stream-{pipeline}").describe()
    return described.status.name if described.status else "?"


def test_apply_wait_goes_with_backfill(tmp_path):
    env = {"SRC_DSN": "postgresql://x@h/s", "TGT_DSN": "postgresql://x@h/t"}
    cli = CLI(tmp_path, config("none", ("waited",)), {**env, "TEMPORAL_ADDRESS": "h:1"})
    result = cli.run("apply", "--wait", check=False)
    assert result.returncode == 2, result.stderr
    assert "--wait goes with --backfill" in result.stderr and "Traceback" not in result.stderr
