"""Backfill Postgres → Postgres against a raw ``psql COPY | psql COPY`` pipe.

Both copy the same table between the same two databases; the baseline's target table is created
beforehand (not timed), the engine creates its own. The engine figure includes process start,
snapshot export, chunking and the final checkpoint: what a user waits for.
"""

from __future__ import annotations

import subprocess

import psycopg
from psycopg import sql

from benchmarks.checks import compare, expect_rows, pg_digest
from benchmarks.core import BenchmarkError, Context, Scenario, ScenarioResult
from benchmarks.datagen import TABLE, create_table, insert_rows
from benchmarks.env import BenchEnv, pg_source, pg_target, pg_tool
from benchmarks.measure import Stopwatch

NAME = "pg_backfill"
TITLE = "backfill Postgres→Postgres"
TARGET_RATIO = 0.7

TARGET = f"≥ {TARGET_RATIO}× COPY pipe"


def run(ctx: Context) -> ScenarioResult:
    env = ctx.env
    rows = ctx.size(50_000, 1_000_000)
    result = ScenarioResult(
        NAME,
        TITLE,
        unit="rows/s",
        baseline="psql COPY pipe",
        rows=rows,
        target=TARGET,
    )
    src = env.new_pg_db("bf_src")
    try:
        with psycopg.connect(src, autocommit=True) as conn:
            create_table(conn)
            insert_rows(conn, 1, rows)
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(TABLE)))
        source = pg_digest(src, TABLE)
        expect_rows(source, rows, "source")
        timeout = 900
        for attempt in range(ctx.repeats(3)):
            result.baseline_runs.append(rows / copy_pipe(env, src, source, env.limit(timeout)))
            seconds, rss, check = engine_backfill(env, src, source, attempt, timeout)
            result.runs.append(rows / seconds)
            result.peak_rss_mb = max(result.peak_rss_mb or 0.0, rss)
            result.check = check
    finally:
        env.drop_pg_db(src)
    result.finish()
    result.target_met = result.ratio is not None and result.ratio >= TARGET_RATIO
    return result


def copy_pipe(env: BenchEnv, src: str, source_digest: object, timeout: float) -> float:
    """Seconds for ``psql -c "COPY t TO STDOUT" | psql -c "COPY t FROM STDIN"``."""
    tgt = env.new_pg_db("bf_copy")
    try:
        with psycopg.connect(tgt, autocommit=True) as conn:
            create_table(conn)
        table = sql.Identifier(TABLE).as_string()
        with Stopwatch() as watch:
            out = subprocess.Popen(psql(src, f"COPY {table} TO STDOUT"), stdout=subprocess.PIPE)
            into = subprocess.run(
                psql(tgt, f"COPY {table} FROM STDIN"),
                stdin=out.stdout,
                capture_output=True,
                timeout=timeout,
            )
            out.stdout.close()  # type: ignore[union-attr]
            out.wait(timeout)
        if out.returncode or into.returncode:
            raise BenchmarkError(f"baseline COPY pipe failed: {into.stderr.decode()[-500:]}")
        compare(source_digest, pg_digest(tgt, TABLE), "baseline COPY pipe")  # type: ignore[arg-type]
        return watch.seconds
    finally:
        env.drop_pg_db(tgt)


def psql(dsn: str, command: str) -> list[str]:
    return [pg_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", command]


def engine_backfill(
    env: BenchEnv, src: str, source_digest: object, attempt: int, timeout: float
) -> tuple[float, float, str]:
    """``syncengine backfill`` into a fresh database: (seconds, peak RSS MB, check)."""
    tgt = env.new_pg_db("bf_tgt")
    name = f"bench_backfill_{attempt}"
    try:
        config = env.write_config(
            name, {"source": pg_source(src, [f"public.{TABLE}"]), "target": pg_target(tgt)}
        )
        run = env.engine("backfill", str(config), "--parallel", "2", timeout=timeout)
        check = compare(source_digest, pg_digest(tgt, TABLE), "engine backfill")  # type: ignore[arg-type]
        return run.seconds, run.peak_rss_mb, check
    finally:
        env.drop_pg_db(tgt)
        env.drop_slots(src)


SCENARIO = Scenario(NAME, TITLE, run, weight=1.5, target=TARGET)
