"""Live pgbench: lag of the running daemon, and of Postgres's own apply worker, under load.

For each consumer in turn (``syncengine run`` with ``batch.max_wait: 100ms``, then a native
``CREATE SUBSCRIPTION … copy_data = true``), on its own ``pgbench -i -s 10`` source (quick:
``-s 1``) with a probe row (:mod:`benchmarks.probe`: lag from the source's clock):

1. the consumer starts on the empty tables, which are then filled with the rows ``pgbench -i``
   makes (streamed to it: the setup does not wait on a backfill); warmed up once a stamp made
   after the fill arrives; the fill's writes are then flushed to disk (CHECKPOINT + sync), or
   the kernel writes them back ~30 s later, in the throttled window, and every consumer's
   commits wait on it (p99 ≈ 1.5 s for both, engine and native, before this flush);
2. **throttled**: ``pgbench -R 500`` (≈ 2,000 row changes/s) for 60 s (quick 5 s): p50/p99 lag;
3. **unthrottled**: ``pgbench`` at full speed for 300 s (quick 5 s): lag at the start (median
   of the first fifth of the stamps) and at the end (last fifth): does it grow? Then the
   catch-up: the lag of the first stamp made after the load, i.e. how long after the load ended
   the target held everything the load wrote;
4. the consumer stops (the daemon by SIGTERM, which must exit 0) and every table, the probe
   included, is compared with the source.

Rates: row changes of the unthrottled load ÷ (load seconds + catch-up seconds). ``pgbench_history``
is left out for every consumer when the engine cannot take keyless tables (details say so).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import psycopg

from benchmarks.checks import compare_tables, tables_digest
from benchmarks.core import BenchmarkError, Context, Scenario, ScenarioResult
from benchmarks.env import BenchEnv, flush_writes, pg_source, pg_target
from benchmarks.measure import ProcessRun, describe_failure
from benchmarks.native import create_publication, create_slot, drop_subscriptions, subscribe
from benchmarks.pgtools import changes, engine_tables, pgbench_fill, pgbench_init, pgbench_load
from benchmarks.probe import PROBE, Prober, create_probe
from benchmarks.scenarios.pg_latency import percentile

NAME = "pgbench_live"
TITLE = "live pgbench: lag and catch-up"
RATE = 500
TARGET_P99_MS = 500
GROWTH_S = 1.0
"""Lag "does not grow" when the end lag is at most this much above the start lag."""
MAX_WAIT = "100ms"
PUBLICATION = "bench_live"
SLOT = "bench_live_native"

TARGET = (
    f"p99 ≤ {TARGET_P99_MS} ms at {RATE} tps; unthrottled lag does not grow; "
    "catch-up ≤ native apply worker's"
)


@dataclass
class Figures:
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    lag_start_s: float = 0.0
    lag_end_s: float = 0.0
    catch_up_s: float = 0.0
    changes_per_s: float = 0.0
    load_tps: float = 0.0
    check: str = ""
    peak_rss_mb: float | None = None


def run(ctx: Context) -> ScenarioResult:
    env = ctx.env
    scale = ctx.size(1, 10)
    throttled, unthrottled = (5, 5) if ctx.quick else (60, 300)
    tables, note = engine_tables(env)
    result = ScenarioResult(
        NAME, TITLE, unit="changes/s", baseline="native apply worker", target=TARGET
    )
    if note:
        result.extra["tables_note"] = note
    durations = (throttled, unthrottled)
    engine = consume(env, "engine", scale, tables, durations, EngineDaemon)
    native = consume(env, "native", scale, tables, durations, NativeSubscription)
    result.runs, result.baseline_runs = [engine.changes_per_s], [native.changes_per_s]
    result.peak_rss_mb = engine.peak_rss_mb
    result.check = engine.check
    for label, figures in (("engine", engine), ("native", native)):
        for key in ("p50_ms", "p99_ms", "lag_start_s", "lag_end_s", "catch_up_s", "load_tps"):
            result.extra[f"{label}_{key}"] = round(getattr(figures, key), 3)
    result.extra.update(throttled_s=throttled, unthrottled_s=unthrottled, max_wait=MAX_WAIT)
    result.headline = (
        f"p99 {engine.p99_ms:,.0f} ms (native {native.p99_ms:,.0f}); lag "
        f"{engine.lag_start_s:.1f}→{engine.lag_end_s:.1f} s (native "
        f"{native.lag_start_s:.1f}→{native.lag_end_s:.1f}); catch-up {engine.catch_up_s:.1f} s "
        f"(native {native.catch_up_s:.1f})"
    )
    result.finish()
    result.target_met = (
        engine.p99_ms <= TARGET_P99_MS
        and engine.lag_end_s <= engine.lag_start_s + GROWTH_S
        and engine.catch_up_s <= native.catch_up_s + 0.1  # one stamp interval of noise
    )
    return result


class Consumer(Protocol):
    def alive(self) -> None:
        """Raises when the consumer died."""

    def stop(self) -> ProcessRun | None:
        """Stops it (cleanly); the engine's run, or None."""


def consume(
    env: BenchEnv,
    label: str,
    scale: int,
    tables: list[str],
    durations: tuple[int, int],
    starter: Callable[[BenchEnv, str, str, list[str]], Consumer],
) -> Figures:
    figures = Figures()
    src, tgt = env.new_pg_db(f"live_{label}_src"), env.new_pg_db(f"live_{label}_tgt")
    prober: Prober | None = None
    consumer: Consumer | None = None
    try:
        pgbench_init(src, scale, env.limit(900), schema_only=True)
        create_probe(src)
        consumer = starter(env, src, tgt, [*tables, PROBE])
        alive = consumer.alive
        prober = Prober(src, tgt)
        prober.next_arrival(env.limit(900), alive)  # the (empty) tables are copied
        pgbench_fill(src, scale)
        prober.next_arrival(env.limit(900), alive)  # made after the fill: applied after it
        with psycopg.connect(src, autocommit=True) as conn:
            flush_writes(conn)  # the fill's writeback is not the consumer's lag
        first = prober.last_stamp + 1
        load = pgbench_load(src, durations[0], env.limit(durations[0] + 120), rate=RATE)
        last = prober.last_stamp
        prober.wait_arrival(last, env.limit(600), alive)
        lags = sorted(prober.lags_ms(first, last))
        figures.p50_ms, figures.p99_ms = percentile(lags, 50), percentile(lags, 99)
        first = prober.last_stamp + 1
        load = pgbench_load(src, durations[1], env.limit(durations[1] + 120))
        last = prober.last_stamp
        after = prober.next_arrival(env.limit(3600), alive)
        lags = prober.lags_ms(first, last)
        fifth = max(1, len(lags) // 5)
        figures.lag_start_s = statistics.median(lags[:fifth]) / 1000
        figures.lag_end_s = statistics.median(lags[-fifth:]) / 1000
        figures.catch_up_s = prober.lags_ms(after, after)[0] / 1000
        figures.load_tps = load.tps
        applied = changes(load.transactions, tables)
        figures.changes_per_s = applied / (load.seconds + figures.catch_up_s)
        prober.stop_stamping()
        prober.wait_arrival(prober.last_stamp, env.limit(600), alive)
        stopped, consumer = consumer.stop(), None
        if stopped is not None:
            if stopped.returncode != 0:
                raise BenchmarkError(describe_failure(stopped, "engine run (SIGTERM)"))
            figures.peak_rss_mb = stopped.peak_rss_mb
        every = [*tables, PROBE]
        figures.check = compare_tables(
            tables_digest(src, every), tables_digest(tgt, every), f"{label} live"
        )
    finally:
        if prober is not None:
            prober.close()
        if consumer is not None:
            consumer.stop()
        drop_subscriptions(tgt)
        env.drop_pg_db(tgt)
        env.drop_pg_db(src)
    return figures


class EngineDaemon:
    """``syncengine run`` on the pgbench tables and the probe."""

    def __init__(self, env: BenchEnv, src: str, tgt: str, tables: list[str]) -> None:
        config = env.write_config(
            "bench_live",
            {
                "source": pg_source(src, [f"public.{t}" for t in tables]),
                "target": pg_target(tgt),
                "batch": {"max_rows": 10_000, "max_wait": MAX_WAIT},
            },
        )
        self.daemon = env.start_engine("run", str(config))

    def alive(self) -> None:
        if not self.daemon.alive():
            raise BenchmarkError(describe_failure(self.daemon.wait(), "engine run"))

    def stop(self) -> ProcessRun | None:
        return self.daemon.stop(60)


class NativeSubscription:
    """``CREATE SUBSCRIPTION … copy_data = true`` into ``pgbench -i -I dtp`` tables."""

    def __init__(self, env: BenchEnv, src: str, tgt: str, tables: list[str]) -> None:
        self.tgt = tgt
        pgbench_init(tgt, 1, env.limit(300), schema_only=True)
        create_probe(tgt, row=False)
        create_publication(src, PUBLICATION, tables)
        create_slot(src, SLOT)
        subscribe(src, tgt, SLOT, PUBLICATION, SLOT, copy_data=True)

    def alive(self) -> None:
        """The apply worker restarts by itself; a dead one shows as a stalled probe."""

    def stop(self) -> ProcessRun | None:
        drop_subscriptions(self.tgt)
        return None


SCENARIO = Scenario(NAME, TITLE, run, weight=3.0, target=TARGET)
