"""Commit-to-target latency at a steady 2,000 changes/s, without triggers.

A client thread commits one workload transaction (100 changes) every 50 ms and notes the wall
time just after each commit returns. The main thread polls the target every 10 ms for
``max(id)``; transaction ``k`` has arrived once the id of its last insert is there (ids only
grow, the engine applies in commit order). Latency = first poll that sees it − commit time, so
it includes the poll interval: an upper bound, at most ~10 ms high.
"""

from __future__ import annotations

import threading
import time

import psycopg
from psycopg import sql

from benchmarks.checks import compare, pg_digest
from benchmarks.core import BenchmarkError, Context, Scenario, ScenarioResult
from benchmarks.datagen import (
    TABLE,
    TXN_CHANGES,
    TXN_INSERTS,
    create_table,
    seed_for_workload,
    txn_statements,
)
from benchmarks.env import pg_source, pg_target
from benchmarks.measure import Process, describe_failure

NAME = "pg_latency"
TITLE = "CDC latency at 2,000 changes/s"
RATE = 2_000
TARGET_P99_MS = 500
POLL_S = 0.01
MAX_WAIT = "100ms"

TARGET = f"p99 ≤ {TARGET_P99_MS} ms"


def run(ctx: Context) -> ScenarioResult:
    env = ctx.env
    duration = 10 if ctx.quick else 60  # seconds: --scale changes sizes, not durations
    txns = duration * RATE // TXN_CHANGES
    result = ScenarioResult(
        NAME,
        TITLE,
        unit="changes/s",
        baseline="offered load",
        rows=txns * TXN_CHANGES,
        target=TARGET,
    )
    src, tgt = env.new_pg_db("lat_src"), env.new_pg_db("lat_tgt")
    daemon: Process | None = None
    halt = threading.Event()
    worker: threading.Thread | None = None
    try:
        with psycopg.connect(src, autocommit=True) as conn:
            create_table(conn)
            seed_for_workload(conn)
        config = env.write_config(
            "bench_latency",
            {
                "source": pg_source(src, [f"public.{TABLE}"]),
                "target": pg_target(tgt),
                "batch": {"max_rows": 10_000, "max_wait": MAX_WAIT},
            },
        )
        daemon = env.start_engine("run", str(config))
        with (
            psycopg.connect(src, autocommit=True) as gen,
            psycopg.connect(tgt, autocommit=True) as poll,
        ):
            commit(gen, 0)  # warm-up: the daemon has copied the table once this arrives
            wait_for(poll, TXN_INSERTS, daemon, timeout=env.limit(120))
            # ...which its backfill may have done: a change made now can only come through
            # the stream, so once it arrives the daemon is streaming (a decode process, for
            # one, starts after the backfill)
            wait_streaming(gen, poll, daemon, timeout=env.limit(120))
            commits: dict[int, float] = {}
            worker = threading.Thread(target=generate, args=(src, txns, commits, halt), daemon=True)
            worker.start()
            limit = env.limit(duration + 60)
            arrivals = observe(poll, txns, commits, daemon, timeout=limit)
            worker.join()
        stopped = daemon.stop()
        daemon = None
        if stopped.returncode != 0:
            raise BenchmarkError(describe_failure(stopped, "engine run (SIGTERM)"))
        result.peak_rss_mb = stopped.peak_rss_mb
        result.check = compare(pg_digest(src, TABLE), pg_digest(tgt, TABLE), "engine run")
    finally:
        halt.set()
        if worker is not None:
            worker.join(10)
        if daemon is not None:
            daemon.stop(10)
        env.drop_pg_db(tgt)
        env.drop_pg_db(src)
    latencies = sorted((arrivals[k] - commits[k]) * 1000 for k in commits)
    first, last = min(commits.values()), max(arrivals.values())
    offered_span = max(commits.values()) - first
    result.runs = [txns * TXN_CHANGES / (last - first)]
    result.baseline_runs = [txns * TXN_CHANGES / offered_span] if offered_span else []
    result.extra.update(
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        max_ms=latencies[-1],
        seconds=duration,
        max_wait=MAX_WAIT,
    )
    result.headline = f"p50 {result.extra['p50_ms']:,.0f} ms, p99 {result.extra['p99_ms']:,.0f} ms"
    result.finish()
    result.target_met = result.extra["p99_ms"] <= TARGET_P99_MS
    return result


def commit(conn: psycopg.Connection, k: int) -> None:  # type: ignore[type-arg]
    with conn.transaction():
        for statement in txn_statements(k):
            conn.execute(statement)


def generate(src: str, txns: int, commits: dict[int, float], halt: threading.Event) -> None:
    """Transactions 1..txns, one every 50 ms on a fixed schedule (no drift)."""
    interval = TXN_CHANGES / RATE
    with psycopg.connect(src, autocommit=True) as conn:
        start = time.monotonic()
        for k in range(1, txns + 1):
            if halt.is_set():
                return
            delay = start + (k - 1) * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            commit(conn, k)
            commits[k] = time.time()


def max_id(conn: psycopg.Connection) -> int:  # type: ignore[type-arg]
    try:
        row = conn.execute(sql.SQL("SELECT max(id) FROM {}").format(sql.Identifier(TABLE)))
        return int(row.fetchone()[0] or 0)  # type: ignore[index]
    except psycopg.errors.UndefinedTable:
        return 0


def wait_for(conn: psycopg.Connection, wanted: int, daemon: Process, timeout: float) -> None:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while max_id(conn) < wanted:
        if not daemon.alive():
            raise BenchmarkError(describe_failure(daemon.wait(), "engine run"))
        if time.monotonic() > deadline:
            raise BenchmarkError(f"engine run: warm-up change not applied within {timeout} s")
        time.sleep(0.05)


def wait_streaming(
    gen: psycopg.Connection,  # type: ignore[type-arg]
    poll: psycopg.Connection,  # type: ignore[type-arg]
    daemon: Process,
    timeout: float,
) -> None:
    table = sql.Identifier(TABLE)
    update = sql.SQL("UPDATE {} SET qty = qty + 1 WHERE id = 1 RETURNING qty").format(table)
    (wanted,) = gen.execute(update).fetchone()  # type: ignore[misc]
    query = sql.SQL("SELECT qty FROM {} WHERE id = 1").format(table)
    deadline = time.monotonic() + timeout
    while (poll.execute(query).fetchone() or (None,))[0] != wanted:
        if not daemon.alive():
            raise BenchmarkError(describe_failure(daemon.wait(), "engine run"))
        if time.monotonic() > deadline:
            raise BenchmarkError(f"engine run: not streaming within {timeout} s")
        time.sleep(0.05)


def observe(
    conn: psycopg.Connection,  # type: ignore[type-arg]
    txns: int,
    commits: dict[int, float],
    daemon: Process,
    timeout: float,
) -> dict[int, float]:
    """Arrival time of every transaction, by polling the target."""
    arrivals: dict[int, float] = {}
    next_k = 1
    deadline = time.monotonic() + timeout
    while next_k <= txns:
        seen = max_id(conn)
        now = time.time()
        while next_k <= txns and seen >= next_k * TXN_INSERTS + TXN_INSERTS and next_k in commits:
            arrivals[next_k] = now
            next_k += 1
        if not daemon.alive():
            raise BenchmarkError(describe_failure(daemon.wait(), "engine run"))
        if time.monotonic() > deadline:
            raise BenchmarkError(
                f"engine run: only {next_k - 1} of {txns} transactions arrived within {timeout} s"
            )
        time.sleep(POLL_S)
    return arrivals


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    if not sorted_values:
        raise BenchmarkError("no latency samples")
    rank = max(1, -(-len(sorted_values) * pct // 100))
    return round(sorted_values[int(rank) - 1], 1)


SCENARIO = Scenario(NAME, TITLE, run, target=TARGET)
