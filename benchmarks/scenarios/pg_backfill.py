"""Backfill Postgres → Postgres against what a user could run instead, all in the same run.

Baselines, each copying the same table between two databases of the same cluster:

* ``psql -c "COPY t TO STDOUT (FORMAT binary)" | psql -c "COPY t FROM STDIN (FORMAT binary)"``
  (the issue's target: ≥ 0.7× of it), and the same pipe in text format;
* Sling (``sling run``, it creates the table like the engine; skipped with the reason where its
  binary is not installed or cannot run, see :mod:`benchmarks.sling`): target ≥ 3× it;
* Postgres's own ``CREATE SUBSCRIPTION … WITH (copy_data = true)``, from the statement until
  every table is synchronized (:mod:`benchmarks.native`).

The pipes' and the subscription's target tables are created beforehand (not timed). The engine
figure includes process start, snapshot export, chunking and the final checkpoint: what a user
waits for. Its per-phase seconds (when the engine logs them) are in the details.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from benchmarks.checks import compare, expect_rows, pg_digest
from benchmarks.core import Context, Scenario, ScenarioResult
from benchmarks.datagen import TABLE, create_table, insert_rows
from benchmarks.env import BenchEnv, pg_source, pg_target
from benchmarks.native import copy_data_seconds, create_publication
from benchmarks.pgtools import copy_pipe
from benchmarks.phases import phase_seconds
from benchmarks.sling import SlingUnavailable, sling_binary, sling_copy

NAME = "pg_backfill"
TITLE = "backfill Postgres→Postgres"
TARGET_RATIO = 0.7
TARGET_SLING = 3.0
PUBLICATION = "bench_backfill"
BINARY, TEXT, SLING, NATIVE = "binary COPY pipe", "text COPY pipe", "Sling", "native copy_data"

TARGET = f"≥ {TARGET_RATIO}× binary COPY pipe, ≥ {TARGET_SLING:g}× Sling"


def run(ctx: Context) -> ScenarioResult:
    env = ctx.env
    rows = ctx.size(50_000, 1_000_000)
    result = ScenarioResult(
        NAME, TITLE, unit="rows/s", baseline=f"psql {BINARY}", rows=rows, target=TARGET
    )
    src = env.new_pg_db("bf_src")
    try:
        binary: str | None = sling_binary()
    except SlingUnavailable as exc:
        binary = None
        result.skipped[SLING] = str(exc)
    try:
        with psycopg.connect(src, autocommit=True) as conn:
            create_table(conn)
            insert_rows(conn, 1, rows)
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(TABLE)))
        create_publication(src, PUBLICATION, [TABLE])
        source = pg_digest(src, TABLE)
        expect_rows(source, rows, "source")
        timeout = 900
        for attempt in range(ctx.repeats(3)):
            seconds = baseline(
                env, BINARY, source, lambda t: copy_pipe(src, t, [TABLE], True, env.limit(timeout))
            )
            result.baseline_runs.append(rows / seconds)
            seconds = baseline(
                env, TEXT, source, lambda t: copy_pipe(src, t, [TABLE], False, env.limit(timeout))
            )
            result.others.setdefault(TEXT, []).append(rows / seconds)
            if binary is not None:
                seconds = baseline(
                    env,
                    SLING,
                    source,
                    lambda t: sling_copy(binary, src, t, TABLE, env.limit(timeout)),
                    create=False,
                )
                result.others.setdefault(SLING, []).append(rows / seconds)
            seconds = baseline(
                env,
                NATIVE,
                source,
                lambda t, a=attempt: copy_data_seconds(
                    src, t, f"bench_copy_{a}", PUBLICATION, 1, env.limit(timeout)
                ),
            )
            result.others.setdefault(NATIVE, []).append(rows / seconds)
            seconds, rss, check, phases = engine_backfill(env, src, source, attempt, timeout)
            result.runs.append(rows / seconds)
            result.peak_rss_mb = max(result.peak_rss_mb or 0.0, rss)
            result.check = check
            if phases:
                result.extra["engine_phase_seconds"] = phases
    finally:
        env.drop_pg_db(src)
    result.finish()
    sling_ratio = result.other_ratios.get(SLING)
    result.target_met = (
        result.ratio is not None
        and result.ratio >= TARGET_RATIO
        and (sling_ratio is None or sling_ratio >= TARGET_SLING)
    )
    return result


def baseline(env: BenchEnv, label: str, source: object, copy: object, create: bool = True) -> float:
    """Seconds of ``copy(target_dsn)`` into a fresh database, checked against ``source``."""
    tgt = env.new_pg_db("bf_base")
    try:
        if create:
            with psycopg.connect(tgt, autocommit=True) as conn:
                create_table(conn)
        seconds = copy(tgt)  # type: ignore[operator]
        compare(source, pg_digest(tgt, TABLE), f"baseline {label}")  # type: ignore[arg-type]
        return float(seconds)
    finally:
        env.drop_pg_db(tgt)


def engine_backfill(
    env: BenchEnv, src: str, source_digest: object, attempt: int, timeout: float
) -> tuple[float, float, str, dict[str, float]]:
    """``syncengine backfill`` into a fresh database: (seconds, peak RSS MB, check, phases)."""
    tgt = env.new_pg_db("bf_tgt")
    name = f"bench_backfill_{attempt}"
    try:
        config = env.write_config(
            name, {"source": pg_source(src, [f"public.{TABLE}"]), "target": pg_target(tgt)}
        )
        run = env.engine("backfill", str(config), "--parallel", "2", timeout=timeout)
        check = compare(source_digest, pg_digest(tgt, TABLE), "engine backfill")  # type: ignore[arg-type]
        return run.seconds, run.peak_rss_mb, check, phase_seconds(run.stderr)
    finally:
        env.drop_pg_db(tgt)
        env.drop_slots(src)


SCENARIO = Scenario(NAME, TITLE, run, weight=2.0, target=TARGET)
