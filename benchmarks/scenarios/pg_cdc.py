"""CDC Postgres → Postgres: drain a million committed row changes, against Postgres's own
apply worker and ``pg_recvlogical``.

Setup: the seed rows are backfilled (which creates the engine's slot and checkpoint), two more
slots per run are created at the same point for the baselines, then the 70/25/5 workload
commits every 100 changes, then one marker row. Each run drains the same WAL from its own slot,
one consumer at a time: ``pg_recvlogical`` (pgoutput, same table, to /dev/null, up to the load's
end LSN), the native apply worker (``CREATE SUBSCRIPTION … copy_data = false`` on its slot, into
a database holding the seed rows; clock until the marker row is applied, see
:mod:`benchmarks.native`) and ``syncengine sync --once`` (decode, map, compact, apply,
checkpoint), the three in an order rotated from run to run (``measure.in_turns``). Rates are
changes / wall seconds of the drain. The source is on the suite's cluster, every target
database (the engine's, the native worker's) on a second one (``BenchEnv.pg_targets``): on one
cluster each drain's writes lengthened the WAL the next one read.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from benchmarks.checks import compare, expect_rows, pg_digest
from benchmarks.core import Context, Scenario, ScenarioResult
from benchmarks.datagen import (
    TABLE,
    TXN_CHANGES,
    create_table,
    seed_for_workload,
    workload_rows_after,
    workload_sql,
)
from benchmarks.env import BenchEnv, pg_source, pg_target, pg_tool
from benchmarks.measure import Stopwatch, in_turns, run_process
from benchmarks.native import drain_seconds
from benchmarks.phases import phase_seconds

NAME = "pg_cdc"
TITLE = "CDC Postgres→Postgres"
TARGET_RATE = 50_000
TARGET_NATIVE = 1.0
MARKER = "bench_marker"
PUBLICATION = "bench_baseline"

TARGET = f"≥ {TARGET_RATE:,} changes/s and ≥ {TARGET_NATIVE:g}× native apply worker"
RECVLOGICAL = "pg_recvlogical → /dev/null"


def run(ctx: Context) -> ScenarioResult:
    env = ctx.env
    txns = ctx.size(300, 10_000)
    changes = txns * TXN_CHANGES
    repeats = ctx.repeats(3)
    timeout = 900
    result = ScenarioResult(
        NAME,
        TITLE,
        unit="changes/s",
        baseline="native apply worker",
        rows=changes,
        target=TARGET,
    )
    src = env.new_pg_db("cdc_src")
    targets: list[str] = []
    natives: list[str] = []
    try:
        with psycopg.connect(src, autocommit=True) as conn:
            create_table(conn)
            seed_for_workload(conn)
            conn.execute(sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(MARKER)))
            conn.execute(
                sql.SQL("CREATE PUBLICATION {} FOR TABLE {}, {}").format(
                    sql.Identifier(PUBLICATION), sql.Identifier(TABLE), sql.Identifier(MARKER)
                )
            )
        configs = []
        for attempt in range(repeats):
            tgt = env.new_pg_db("cdc_tgt", env.pg_targets)
            targets.append(tgt)
            configs.append(prepare_engine(env, src, tgt, attempt, timeout))
            natives.append(env.new_pg_db("cdc_native", env.pg_targets))
            with psycopg.connect(natives[-1], autocommit=True) as conn:
                create_table(conn)
                seed_for_workload(conn)
                conn.execute(sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(MARKER)))
        with psycopg.connect(src, autocommit=True) as conn:
            for attempt in range(repeats):
                for slot in (f"bench_baseline_{attempt}", f"bench_native_{attempt}"):
                    conn.execute(
                        "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,)
                    )
            with Stopwatch() as load:
                conn.execute(workload_sql(0, txns - 1))
            (end_lsn,) = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()  # type: ignore[misc]
            # a committed change past end_lsn, so pg_recvlogical sees --endpos reached at once
            conn.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(sql.Identifier(MARKER)))
        result.extra["load_changes_per_s"] = round(changes / load.seconds)
        source = pg_digest(src, TABLE)
        expect_rows(source, workload_rows_after(txns), "source after workload")
        for attempt in range(repeats):

            def read_only(attempt: int = attempt) -> None:
                seconds = recvlogical(src, f"bench_baseline_{attempt}", end_lsn, env.limit(timeout))
                result.others.setdefault(RECVLOGICAL, []).append(changes / seconds)

            def native(attempt: int = attempt) -> None:
                name = f"bench_native_{attempt}"
                seconds = drain_seconds(
                    src, natives[attempt], name, PUBLICATION, name, env.limit(timeout)
                )
                compare(source, pg_digest(natives[attempt], TABLE), "native apply worker")
                result.baseline_runs.append(changes / seconds)

            def engine(attempt: int = attempt) -> None:
                run_ = env.engine("sync", str(configs[attempt]), "--once", timeout=timeout)
                result.check = compare(source, pg_digest(targets[attempt], TABLE), "engine CDC")
                result.runs.append(changes / run_.seconds)
                result.peak_rss_mb = max(result.peak_rss_mb or 0.0, run_.peak_rss_mb)
                result.extra["engine_said"] = run_.stdout.strip().splitlines()[-1:]
                phases = phase_seconds(run_.stderr)
                if phases:
                    result.extra["engine_phase_seconds"] = phases
                result.extra.setdefault("engine_cpu_us_per_change", []).append(
                    round(run_.cpu_seconds / changes * 1e6, 2)
                )
                # literal "first commit → last row applied" when the engine starts after the load
                span = load.seconds + run_.seconds
                result.extra["first_commit_to_applied_changes_per_s"] = round(changes / span)

            in_turns(attempt, [read_only, native, engine])
    finally:
        for tgt in targets + natives:
            env.drop_pg_db(tgt)
        env.drop_pg_db(src)
    result.finish()
    result.target_met = (
        result.value is not None
        and result.value >= TARGET_RATE
        and result.ratio is not None
        and result.ratio >= TARGET_NATIVE
    )
    return result


def prepare_engine(env: BenchEnv, src: str, tgt: str, attempt: int, timeout: float) -> object:
    """A pipeline whose initial backfill is done: slot created, checkpoint committed."""
    config = env.write_config(
        f"bench_cdc_{attempt}",
        {"source": pg_source(src, [f"public.{TABLE}"]), "target": pg_target(tgt)},
    )
    env.engine("backfill", str(config), timeout=timeout)
    return config


def recvlogical(
    src: str, slot: str, end_lsn: str, timeout: float, publication: str = PUBLICATION
) -> float:
    run_ = run_process(
        [
            pg_tool("pg_recvlogical"),
            "-d",
            src,
            "--slot",
            slot,
            "--start",
            "--no-loop",
            "--endpos",
            end_lsn,
            "-o",
            "proto_version=1",
            "-o",
            f"publication_names={publication}",
            "-f",
            "/dev/null",
        ],
        timeout=timeout,
        what="baseline pg_recvlogical",
    )
    return run_.seconds


SCENARIO = Scenario(NAME, TITLE, run, weight=1.5, target=TARGET)
