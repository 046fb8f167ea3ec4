"""One huge transaction: the engine's peak RSS must not grow with the transaction's size.

A 200k-row transaction (quick: 10k) and a 2M-row one (quick: 100k) are each committed as a
single ``INSERT … SELECT`` after the pipeline's initial (empty) backfill, then drained with
``syncengine sync --once``. The figure is the rows/s of the big one; the memory verdict
compares the two peak RSS values (flat: big ≤ 1.5× small for 10× the rows).
"""

from __future__ import annotations

import psycopg

from benchmarks.checks import compare, expect_rows, pg_digest
from benchmarks.core import Context, Scenario, ScenarioResult
from benchmarks.datagen import TABLE, create_table, insert_rows
from benchmarks.env import BenchEnv, pg_source, pg_target

NAME = "pg_bigtxn"
TITLE = "one huge transaction"
FLAT = 1.5


def run(ctx: Context) -> ScenarioResult:
    small, big = ctx.size(10_000, 200_000), ctx.size(100_000, 2_000_000)
    result = ScenarioResult(
        NAME,
        TITLE,
        unit="rows/s",
        baseline=f"{small:,}-row txn",
        rows=big,
        target=f"peak RSS flat (≤ {FLAT}× the {small:,}-row txn)",
    )
    timeout = 1200
    small_rss: list[float] = []
    big_rss: list[float] = []
    for _ in range(ctx.repeats(1)):
        seconds, rss, _check = one_transaction(ctx.env, small, timeout)
        result.baseline_runs.append(small / seconds)
        small_rss.append(rss)
        seconds, rss, result.check = one_transaction(ctx.env, big, timeout)
        result.runs.append(big / seconds)
        big_rss.append(rss)
    result.peak_rss_mb = max(big_rss)
    ratio = max(big_rss) / max(small_rss)
    result.extra.update(
        small_txn_rows=small,
        small_peak_rss_mb=round(max(small_rss), 1),
        big_peak_rss_mb=round(max(big_rss), 1),
        rss_ratio=round(ratio, 2),
    )
    result.headline = f"peak RSS {max(big_rss):,.0f} MB vs {max(small_rss):,.0f} MB ({ratio:.2f}×)"
    result.finish()
    result.target_met = ratio <= FLAT
    return result


def one_transaction(env: BenchEnv, rows: int, timeout: float) -> tuple[float, float, str]:
    src, tgt = env.new_pg_db("big_src"), env.new_pg_db("big_tgt")
    try:
        with psycopg.connect(src, autocommit=True) as conn:
            create_table(conn)
        config = env.write_config(
            f"bench_bigtxn_{rows}",
            {"source": pg_source(src, [f"public.{TABLE}"]), "target": pg_target(tgt)},
        )
        env.engine("backfill", str(config), timeout=timeout)
        with psycopg.connect(src) as conn:  # one transaction, committed on exit
            insert_rows(conn, 1, rows)
        source = pg_digest(src, TABLE)
        expect_rows(source, rows, "source")
        run_ = env.engine("sync", str(config), "--once", timeout=timeout)
        check = compare(source, pg_digest(tgt, TABLE), f"engine {rows:,}-row transaction")
        return run_.seconds, run_.peak_rss_mb, check
    finally:
        env.drop_pg_db(tgt)
        env.drop_pg_db(src)


SCENARIO = Scenario(
    NAME, TITLE, run, weight=2.5, target=f"peak RSS flat (≤ {FLAT}× the 10× smaller txn)"
)
