"""Backfill of pgbench's tables against Postgres's own ``CREATE SUBSCRIPTION … copy_data``.

The source is ``pgbench -i -s 10`` (quick: ``-s 1``): 1,000,000 ``pgbench_accounts`` rows,
plus tellers and branches; ``pgbench_history`` is empty after ``-i`` and has no key (given
``REPLICA IDENTITY FULL``). When the engine cannot sync a keyless table yet
(:func:`benchmarks.pgtools.engine_tables`), both sides copy only the three keyed tables and
the details say so. The baseline's target tables are created by ``pgbench -i -I dtp`` (schema
and keys, no rows; not timed); its clock runs from ``CREATE SUBSCRIPTION`` until every table is
synchronized. The engine creates its own tables.
"""

from __future__ import annotations

from benchmarks.checks import compare_tables, tables_digest
from benchmarks.core import Context, Scenario, ScenarioResult
from benchmarks.env import BenchEnv, pg_source, pg_target
from benchmarks.native import copy_data_seconds, create_publication
from benchmarks.pgtools import engine_tables, pgbench_init
from benchmarks.phases import phase_seconds

NAME = "pgbench_backfill"
TITLE = "backfill of pgbench scale 10"
TARGET_RATIO = 0.5
PUBLICATION = "bench_pgbench"

TARGET = f"≥ {TARGET_RATIO}× native copy_data"


def run(ctx: Context) -> ScenarioResult:
    env = ctx.env
    scale = ctx.size(1, 10)
    result = ScenarioResult(
        NAME,
        TITLE if scale == 10 else f"backfill of pgbench scale {scale}",
        unit="rows/s",
        baseline="native CREATE SUBSCRIPTION copy_data",
        target=TARGET,
    )
    timeout = 900
    tables, note = engine_tables(env)
    if note:
        result.extra["tables_note"] = note
    result.extra["tables"] = tables
    src = env.new_pg_db("pgb_src")
    try:
        pgbench_init(src, scale, env.limit(timeout))
        create_publication(src, PUBLICATION, tables)
        source = tables_digest(src, tables)
        rows = result.rows = sum(d.rows for d in source.values())
        for attempt in range(ctx.repeats(3)):
            tgt = env.new_pg_db("pgb_native")
            try:
                pgbench_init(tgt, scale, env.limit(timeout), schema_only=True)
                seconds = copy_data_seconds(
                    src, tgt, f"bench_pgb_{attempt}", PUBLICATION, len(tables), env.limit(timeout)
                )
                compare_tables(source, tables_digest(tgt, tables), "native copy_data")
            finally:
                env.drop_pg_db(tgt)
            result.baseline_runs.append(rows / seconds)
            seconds, rss, result.check, phases = engine_backfill(
                env, src, tables, source, attempt, timeout
            )
            result.runs.append(rows / seconds)
            result.peak_rss_mb = max(result.peak_rss_mb or 0.0, rss)
            if phases:
                result.extra["engine_phase_seconds"] = phases
    finally:
        env.drop_pg_db(src)
    result.finish()
    result.target_met = result.ratio is not None and result.ratio >= TARGET_RATIO
    return result


def engine_backfill(
    env: BenchEnv, src: str, tables: list[str], source: dict, attempt: int, timeout: float
) -> tuple[float, float, str, dict[str, float]]:
    tgt = env.new_pg_db("pgb_tgt")
    try:
        config = env.write_config(
            f"bench_pgbench_backfill_{attempt}",
            {"source": pg_source(src, [f"public.{t}" for t in tables]), "target": pg_target(tgt)},
        )
        run = env.engine("backfill", str(config), "--parallel", "2", timeout=timeout)
        check = compare_tables(source, tables_digest(tgt, tables), "engine backfill")
        return run.seconds, run.peak_rss_mb, check, phase_seconds(run.stderr)
    finally:
        env.drop_pg_db(tgt)
        env.drop_slots(src)


SCENARIO = Scenario(NAME, TITLE, run, weight=4.0, target=TARGET)
