"""A cluster stream's initial snapshot, Postgres → Postgres: spread over 1, 2 and 3 workers.

One source table (1M rows; ``--quick``: 100k) and a new pipeline started by ``syncengine
apply`` (a stream workflow) on a throwaway Temporal dev server, workers polling before the
clock. Timed: from ``apply`` until the target holds the pipeline's checkpoint, i.e. until the
stream starts, which it does only after the whole snapshot was applied
(``syncengine/cluster/snapchunks.py``). Every copy is checked row for row against the source.

Runs, same session: the spread snapshot with 1, 2 and 3 ``worker --concurrency 2`` processes
(``snapshot_in_flight: 4``; the figure is the 3-worker rate), the same pipeline with
``snapshot_in_flight: 0`` on one worker (the first stream attempt copies it with the embedded
backfill: exported snapshot, binary COPY into the empty table), and the embedded ``syncengine
backfill --parallel 2`` (the baseline). A spread chunk pays what a reconciled chunk pays: a
temporary slot's creation, a watermark window decoded, rows decoded from text and applied
through the fenced path with one shadow row per key.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import yaml

from benchmarks.checks import Digest, compare, pg_digest
from benchmarks.core import BenchmarkError, Context, Scenario, ScenarioResult
from benchmarks.datagen import TABLE
from benchmarks.env import BenchEnv, syncengine_exe
from benchmarks.measure import run_process
from benchmarks.scenarios.cluster_backfill import (
    CHUNKS,
    TIMEOUT,
    WORKER_COUNTS,
    setup,
    start_workers,
)
from benchmarks.scenarios.cluster_backfill import cluster_config as backfill_config
from benchmarks.scenarios.pg_backfill import engine_backfill

NAME = "cluster_snapshot"
TITLE = "cluster stream's initial snapshot Postgres→Postgres, spread over 1/2/3 workers"
IN_FLIGHT = 4


def run(ctx: Context) -> ScenarioResult:
    env = ctx.env
    rows = ctx.size(100_000, 1_000_000)
    result, src, digest, temporal = setup(ctx, NAME, TITLE, rows)
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        for attempt in range(ctx.repeats(1)):
            seconds, rss, _, _ = engine_backfill(env, src, digest, attempt, TIMEOUT, {})
            result.baseline_runs.append(rows / seconds)
            result.peak_rss_mb = max(result.peak_rss_mb or 0.0, rss)
            one = stream_snapshot(env, temporal.address, src, digest, rows, 1, in_flight=0)
            runs.setdefault("one worker, snapshot_in_flight 0", []).append(one)
            result.others.setdefault("one stream attempt (in_flight 0)", []).append(
                float(one["rows_per_s"])
            )
            for workers in WORKER_COUNTS:
                figures = stream_snapshot(env, temporal.address, src, digest, rows, workers)
                runs.setdefault(f"{workers} worker(s)", []).append(figures)
                rate = float(figures["rows_per_s"])
                if workers == WORKER_COUNTS[-1]:
                    result.runs.append(rate)
                else:
                    result.others.setdefault(f"spread, {workers} worker(s)", []).append(rate)
                result.check = str(figures["check"])
    finally:
        temporal.destroy()
        env.drop_pg_db(src)
    result.extra["runs"] = runs
    result.extra["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result.extra["limit"] = (
        f"{os.cpu_count()} cores shared by the workers, Temporal and the one PostgreSQL that "
        "holds source and target"
    )
    return result.finish()


def stream_snapshot(
    env: BenchEnv,
    address: str,
    src: str,
    digest: Digest,
    rows: int,
    workers: int,
    in_flight: int = IN_FLIGHT,
) -> dict[str, Any]:
    """One new pipeline's stream workflow with ``workers`` workers: seconds from ``apply``
    until its checkpoint is at the target, the check, and the workers' CPU."""
    from tests.temporal_server import wait_for_pollers

    tag = uuid.uuid4().hex[:6]
    name, queue = f"bench_snap_{workers}_{in_flight}_{tag}", f"bench-{tag}"
    tgt = env.new_pg_db("cs_tgt")
    config = _config(env, name, queue, address, src, tgt, max(1_000, rows // CHUNKS), in_flight)
    procs = start_workers(config, workers)
    try:
        asyncio.run(wait_for_pollers(address, queue, workers, 120))
        started = time.perf_counter()
        run_process(
            [syncengine_exe(), "apply", str(config)],
            env={**os.environ, "SYNCENGINE_STATE": str(config.parent / "apply.db")},
            timeout=120,
            what="apply",
        )
        _wait_for_checkpoint(tgt, name, env.limit(TIMEOUT))
        seconds = time.perf_counter() - started
        check = compare(digest, pg_digest(tgt, TABLE), f"stream snapshot, {workers} worker(s)")
    finally:
        stopped = [proc.stop() for proc in procs]
        _drop_slot(src, f"syncengine_{name}")
        env.drop_pg_db(tgt)
    return {
        "rows_per_s": round(rows / seconds),
        "seconds": round(seconds, 2),
        "check": check,
        "worker_cpu_seconds": [round(s.cpu_seconds, 1) for s in stopped],
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def _wait_for_checkpoint(dsn: str, pipeline: str, timeout: float) -> None:
    give_up = time.monotonic() + timeout
    query = "SELECT 1 FROM _syncengine.checkpoints WHERE pipeline = %s"
    with psycopg.connect(dsn, autocommit=True) as conn:
        while time.monotonic() < give_up:
            try:
                if conn.execute(query, (pipeline,)).fetchone():
                    return
            except psycopg.errors.UndefinedTable:
                pass
            time.sleep(0.2)
    raise BenchmarkError(f"{pipeline}: no checkpoint within {timeout:.0f} s")


def _drop_slot(dsn: str, slot: str) -> None:
    """The run's slot goes with it: a slot left behind would keep the source's WAL."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(50):
            try:
                conn.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                    "WHERE slot_name = %s",
                    (slot,),
                )
                return
            except psycopg.errors.ObjectInUse:  # its walsender is still exiting
                time.sleep(0.2)


def _config(
    env: BenchEnv,
    name: str,
    queue: str,
    address: str,
    src: str,
    tgt: str,
    chunk_rows: int,
    in_flight: int,
) -> Path:
    """The cluster backfill's config (a state file per worker), with ``snapshot_in_flight``."""
    path = backfill_config(env, name, queue, address, src, tgt, chunk_rows)
    config = yaml.safe_load(path.read_text())
    config["cluster"]["snapshot_in_flight"] = in_flight
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


SCENARIO = Scenario(NAME, TITLE, run, in_quick=False, weight=4.0)
