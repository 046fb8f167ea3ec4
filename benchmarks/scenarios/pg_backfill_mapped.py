"""A decoded backfill's memory must not grow with the chunk size (issue 16).

A mapping that computes its fields (a cast, the rest copied) keeps a table off the binary
passthrough: its snapshot chunks are read as CSV, decoded into Arrow, mapped and applied. The
same 8-column table is backfilled twice into fresh databases, with ``snapshot_chunk_rows`` 10×
apart (full: 50,000 vs 500,000 of 1M rows; quick: 10,000 vs 100,000 of 200,000); a chunk is read
in pieces of ``batch.max_rows`` rows, so the peak RSS of the two runs must be about the same
(≤ 1.25×). The figure is the rows/s of the big-chunk run, against the small-chunk run.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from benchmarks.checks import compare, expect_rows, pg_digest
from benchmarks.core import Context, Scenario, ScenarioResult
from benchmarks.datagen import TABLE, create_table, insert_rows
from benchmarks.env import BenchEnv, pg_source, pg_target
from benchmarks.phases import phase_seconds

NAME = "pg_backfill_mapped"
TITLE = "decoded backfill: memory vs chunk size"
FLAT = 1.25
COLUMNS = ("id", "qty", "name", "price", "created", "active", "attrs", "ref")


def run(ctx: Context) -> ScenarioResult:
    rows = ctx.size(200_000, 1_000_000)
    small, big = ctx.size(10_000, 50_000), ctx.size(100_000, 500_000)
    result = ScenarioResult(
        NAME,
        TITLE,
        unit="rows/s",
        baseline=f"chunks of {small:,} rows",
        rows=rows,
        target=f"peak RSS flat (≤ {FLAT}× with 10× smaller chunks)",
    )
    src = ctx.env.new_pg_db("bfm_src")
    timeout = 1200
    small_rss: list[float] = []
    big_rss: list[float] = []
    try:
        with psycopg.connect(src, autocommit=True) as conn:
            create_table(conn)
            insert_rows(conn, 1, rows)
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(TABLE)))
        source = pg_digest(src, TABLE)
        expect_rows(source, rows, "source")
        for attempt in range(ctx.repeats(1)):
            seconds, rss, _, _ = mapped_backfill(ctx.env, src, source, small, attempt, timeout)
            result.baseline_runs.append(rows / seconds)
            small_rss.append(rss)
            seconds, rss, result.check, phases = mapped_backfill(
                ctx.env, src, source, big, attempt, timeout
            )
            result.runs.append(rows / seconds)
            big_rss.append(rss)
            if phases:
                result.extra["engine_phase_seconds"] = phases
    finally:
        ctx.env.drop_pg_db(src)
    result.peak_rss_mb = max(big_rss)
    ratio = max(big_rss) / max(small_rss)
    result.extra.update(
        small_chunk_rows=small,
        big_chunk_rows=big,
        small_chunk_peak_rss_mb=round(max(small_rss), 1),
        big_chunk_peak_rss_mb=round(max(big_rss), 1),
        rss_ratio=round(ratio, 2),
    )
    result.headline = (
        f"peak RSS {max(big_rss):,.0f} MB (chunks of {big:,}) vs {max(small_rss):,.0f} MB "
        f"(chunks of {small:,}): {ratio:.2f}×"
    )
    result.finish()
    result.target_met = ratio <= FLAT
    return result


def mapped_backfill(
    env: BenchEnv, src: str, source_digest: Any, chunk_rows: int, attempt: int, timeout: float
) -> tuple[float, float, str, dict[str, float]]:
    """``syncengine backfill`` through a computing mapping: (seconds, peak RSS MB, check,
    phases)."""
    tgt = env.new_pg_db("bfm_tgt")
    name = f"bench_mapped_{chunk_rows}_{attempt}"
    fields = {c: c for c in COLUMNS} | {"qty": "CAST(qty AS BIGINT)"}
    try:
        config = env.write_config(
            name,
            {
                "source": pg_source(src, [f"public.{TABLE}"]) | {"snapshot_chunk_rows": chunk_rows},
                "target": pg_target(tgt),
                "mappings": [{"source": f"public.{TABLE}", "target": TABLE, "fields": fields}],
            },
        )
        run_ = env.engine("backfill", str(config), "--parallel", "2", timeout=timeout)
        check = compare(source_digest, pg_digest(tgt, TABLE), f"engine, chunks of {chunk_rows:,}")
        return run_.seconds, run_.peak_rss_mb, check, phase_seconds(run_.stderr)
    finally:
        env.drop_pg_db(tgt)
        env.drop_slots(src)


SCENARIO = Scenario(
    NAME, TITLE, run, weight=2.0, target=f"peak RSS flat (≤ {FLAT}× with 10× smaller chunks)"
)
