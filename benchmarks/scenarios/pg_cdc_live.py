"""CDC Postgres → Postgres while the load runs: first commit to last row applied.

The daemon (``syncengine run``) is started and warmed up (one workload transaction applied),
then the rest of the 70/25/5 workload is committed as fast as Postgres takes it while the
daemon streams. The clock runs from just before the first commit until a 50 ms poll of the
target sees the last transaction's rows. The baseline is the load itself: a ratio of 1 means
the engine kept up with the writer.
"""

from __future__ import annotations

import threading
import time

import psycopg

from benchmarks.checks import compare, pg_digest
from benchmarks.core import BenchmarkError, Context, Scenario, ScenarioResult
from benchmarks.datagen import (
    TABLE,
    TXN_CHANGES,
    TXN_INSERTS,
    create_table,
    seed_for_workload,
    workload_sql,
)
from benchmarks.env import pg_source, pg_target
from benchmarks.measure import Process, Stopwatch, describe_failure
from benchmarks.scenarios.pg_cdc import TARGET_RATE
from benchmarks.scenarios.pg_latency import commit, max_id, wait_for

NAME = "pg_cdc_live"
TITLE = "CDC Postgres→Postgres, daemon during the load"
STALL_S = 60
TARGET = f"≥ {TARGET_RATE:,} changes/s"


def run(ctx: Context) -> ScenarioResult:
    env = ctx.env
    txns = ctx.size(300, 10_000)
    changes = (txns - 1) * TXN_CHANGES
    result = ScenarioResult(
        NAME, TITLE, unit="changes/s", baseline="load (commit rate)", rows=changes, target=TARGET
    )
    src, tgt = env.new_pg_db("live_src"), env.new_pg_db("live_tgt")
    daemon: Process | None = None
    try:
        with psycopg.connect(src, autocommit=True) as conn:
            create_table(conn)
            seed_for_workload(conn)
        config = env.write_config(
            "bench_cdc_live",
            {"source": pg_source(src, [f"public.{TABLE}"]), "target": pg_target(tgt)},
        )
        daemon = env.start_engine("run", str(config))
        with (
            psycopg.connect(src, autocommit=True) as gen,
            psycopg.connect(tgt, autocommit=True) as poll,
        ):
            commit(gen, 0)
            wait_for(poll, TXN_INSERTS, daemon, timeout=env.limit(120))
            load = Stopwatch()
            errors: list[BaseException] = []
            loader = threading.Thread(target=_load, args=(src, txns, load, errors), daemon=True)
            started = time.perf_counter()
            loader.start()
            _await_last(poll, txns * TXN_INSERTS, daemon, loader, errors, env.limit(900))
            seconds = time.perf_counter() - started
            loader.join()
        stopped = daemon.stop()
        daemon = None
        if stopped.returncode != 0:
            raise BenchmarkError(describe_failure(stopped, "engine run (SIGTERM)"))
        result.check = compare(pg_digest(src, TABLE), pg_digest(tgt, TABLE), "engine run")
        result.peak_rss_mb = stopped.peak_rss_mb
        result.runs = [changes / seconds]
        result.baseline_runs = [changes / load.seconds]
        result.extra["load_seconds"] = round(load.seconds, 1)
        result.extra["first_commit_to_applied_seconds"] = round(seconds, 1)
    finally:
        if daemon is not None:
            daemon.stop(10)
        env.drop_pg_db(tgt)
        env.drop_pg_db(src)
    result.finish()
    result.target_met = result.value is not None and result.value >= TARGET_RATE
    return result


def _load(src: str, txns: int, watch: Stopwatch, errors: list[BaseException]) -> None:
    try:
        with psycopg.connect(src, autocommit=True) as conn, watch:
            conn.execute(workload_sql(1, txns - 1))
    except BaseException as exc:  # noqa: BLE001 - reported by the polling thread
        errors.append(exc)


def _await_last(
    poll: psycopg.Connection,  # type: ignore[type-arg]
    last_id: int,
    daemon: Process,
    loader: threading.Thread,
    errors: list[BaseException],
    timeout: float,
) -> None:
    """Poll until ``last_id`` is applied; fail on a dead daemon, a failed load or a stall."""
    deadline = time.monotonic() + timeout
    seen, progressed = -1, time.monotonic()
    while (current := max_id(poll)) < last_id:
        if errors:
            raise BenchmarkError(f"workload failed: {errors[0]}")
        if not daemon.alive():
            raise BenchmarkError(describe_failure(daemon.wait(), "engine run"))
        if current != seen:
            seen, progressed = current, time.monotonic()
        stalled = not loader.is_alive() and time.monotonic() - progressed > STALL_S
        if stalled or time.monotonic() > deadline:
            why = f"no progress for {STALL_S} s" if stalled else "out of time"
            raise BenchmarkError(f"engine run: applied up to id {current} of {last_id}, {why}")
        time.sleep(0.05)


SCENARIO = Scenario(NAME, TITLE, run, in_quick=False, weight=1.5, target=TARGET)
