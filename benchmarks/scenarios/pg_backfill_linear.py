"""Does a Postgres → Postgres backfill's time grow linearly with rows? 1M vs 10M (issue 16).

Slow (``--runslow``, or ``--only pg_backfill_linear``): ≈ 6 GB of disk at a time and several
minutes on a quiet 2-core machine. Two source databases of the benchmark table, 1M and 10M rows
(``--scale`` multiplies both), each copied by ``syncengine backfill`` and by the binary ``psql``
pipe into fresh databases, every copy checked row for row. The figure is the engine's rate at
10M rows against its own rate at 1M rows (≥ 0.9×: the rate holds, time grows linearly); the
pipe's rates at both sizes say whether a change in rate is the engine's or the server's.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from benchmarks.checks import Digest, expect_rows, pg_digest
from benchmarks.core import Context, Scenario, ScenarioResult
from benchmarks.datagen import TABLE, create_table, insert_rows
from benchmarks.env import BenchEnv
from benchmarks.pgtools import copy_pipe
from benchmarks.scenarios.pg_backfill import BINARY, baseline, engine_backfill

NAME = "pg_backfill_linear"
TITLE = "backfill Postgres→Postgres, 10M vs 1M rows"
TARGET_RATIO = 0.9
TARGET = f"rate at 10M rows ≥ {TARGET_RATIO}× the rate at 1M"
TIMEOUT = 3600


def run(ctx: Context) -> ScenarioResult:
    env = ctx.env
    small = ctx.size(100_000, 1_000_000)
    sizes = {"small": small, "big": 10 * small}
    result = ScenarioResult(
        NAME, TITLE, unit="rows/s", baseline=f"the engine at {small:,} rows", rows=10 * small,
        target=TARGET,
    )  # fmt: skip
    pipe: dict[str, list[float]] = {"small": [], "big": []}
    for label, rows in sizes.items():
        src, digest = source_db(env, rows)
        try:
            for attempt in range(ctx.repeats(1)):
                seconds = baseline(
                    env, BINARY, digest,
                    lambda t, s=src: copy_pipe(s, t, [TABLE], True, env.limit(TIMEOUT)),
                )  # fmt: skip
                pipe[label].append(rows / seconds)
                seconds, rss, check, _ = engine_backfill(
                    env, src, digest, attempt, TIMEOUT, result.extra.setdefault("key_mb", {})
                )
                (result.runs if label == "big" else result.baseline_runs).append(rows / seconds)
                result.peak_rss_mb = max(result.peak_rss_mb or 0.0, rss)
                result.check = check
        finally:
            env.drop_pg_db(src)
    result.others[f"{BINARY} at {10 * small:,} rows"] = pipe["big"]
    result.extra["pipe_rows_per_s"] = {k: round(max(v)) for k, v in pipe.items() if v}
    result.finish()
    result.target_met = result.ratio is not None and result.ratio >= TARGET_RATIO
    return result


def source_db(env: BenchEnv, rows: int) -> tuple[str, Digest]:
    """A source database holding ``rows`` rows of the benchmark table, and its digest."""
    src = env.new_pg_db("bf_lin")
    with psycopg.connect(src, autocommit=True) as conn:
        create_table(conn)
        insert_rows(conn, 1, rows)
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(TABLE)))
    digest = pg_digest(src, TABLE)
    expect_rows(digest, rows, "source")
    return src, digest


SCENARIO = Scenario(NAME, TITLE, run, in_quick=False, weight=4.0, target=TARGET, slow=True)
