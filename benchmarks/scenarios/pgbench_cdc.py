"""CDC of a pgbench TPC-B-like load: the engine, the native apply worker and ``pg_recvlogical``
draining the same WAL, one at a time.

Setup (not timed): the pgbench tables are created empty (``pgbench -i -I dtp``), each engine
run's pipeline is backfilled on them (slot and checkpoint, no rows), the tables are filled with
the rows ``pgbench -i`` makes (scale 10, quick 1) and every pipeline drains that with
``sync --once``. Then the baselines' slots are created, the native targets get the same rows
(binary COPY pipe into ``pgbench -i -I dtp`` tables), ``pgbench -T 60`` (quick: 5 s) runs, and
a marker row is committed after it. Each consumer then drains from its own slot: rate = row
changes of the load (three updates and one insert per transaction, per table taken) ÷ wall
seconds. ``pgbench_history`` has no key: when the engine cannot take it
(:func:`benchmarks.pgtools.engine_tables`), every consumer gets only the three keyed tables.
The consumers take turns in an order rotated from run to run (``measure.in_turns``). The
source is on the suite's cluster, every target database (the engine's, the native worker's) on
a second one (``BenchEnv.pg_targets``): on one cluster each drain's writes lengthened the WAL
the next one read.
"""

from __future__ import annotations

from pathlib import Path

import psycopg

from benchmarks.checks import compare_tables, tables_digest
from benchmarks.core import BenchmarkError, Context, Scenario, ScenarioResult
from benchmarks.env import BenchEnv, pg_source, pg_target
from benchmarks.measure import in_turns
from benchmarks.native import (
    MARKER,
    create_marker,
    create_publication,
    create_slot,
    drain_seconds,
    write_marker,
)
from benchmarks.pgtools import (
    changes,
    copy_pipe,
    engine_tables,
    pgbench_fill,
    pgbench_init,
    pgbench_load,
)
from benchmarks.scenarios.pg_cdc import RECVLOGICAL, recvlogical

NAME = "pgbench_cdc"
TITLE = "CDC of a pgbench load (TPC-B-like)"
TARGET_NATIVE = 1.0
PUBLICATION = "bench_pgbench_cdc"

TARGET = f"≥ {TARGET_NATIVE:g}× native apply worker"


def run(ctx: Context) -> ScenarioResult:
    env = ctx.env
    scale = ctx.size(1, 10)
    duration = 5 if ctx.quick else 60
    repeats = ctx.repeats(3)
    timeout = 900
    result = ScenarioResult(
        NAME, TITLE, unit="changes/s", baseline="native apply worker", target=TARGET
    )
    tables, note = engine_tables(env)
    if note:
        result.extra["tables_note"] = note
    src = env.new_pg_db("pgbc_src")
    targets: list[str] = []
    natives: list[str] = []
    try:
        pgbench_init(src, scale, env.limit(timeout), schema_only=True)
        create_marker(src)
        create_publication(src, PUBLICATION, [*tables, MARKER])
        configs = []
        for attempt in range(repeats):
            targets.append(env.new_pg_db("pgbc_tgt", env.pg_targets))
            config = env.write_config(
                f"bench_pgbench_cdc_{attempt}",
                {
                    "source": pg_source(src, [f"public.{t}" for t in tables]),
                    "target": pg_target(targets[-1]),
                },
            )
            env.engine("backfill", str(config), timeout=timeout)
            configs.append(config)
        pgbench_fill(src, scale)
        with psycopg.connect(src, autocommit=True) as conn:
            (fill_end,) = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()  # type: ignore[misc]
        for config in configs:
            env.engine("sync", str(config), "--once", timeout=timeout)
        settle_past_fill(env, src, configs, fill_end, timeout)
        for attempt in range(repeats):
            create_slot(src, f"bench_pgbc_recv_{attempt}")
            create_slot(src, f"bench_pgbc_native_{attempt}")
            natives.append(env.new_pg_db("pgbc_native", env.pg_targets))
            pgbench_init(natives[-1], scale, env.limit(timeout), schema_only=True)
            create_marker(natives[-1])
            copy_pipe(src, natives[-1], tables, True, env.limit(timeout))
        load = pgbench_load(src, duration, env.limit(timeout + duration))
        with psycopg.connect(src, autocommit=True) as conn:
            (end_lsn,) = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()  # type: ignore[misc]
        write_marker(src)
        count = result.rows = changes(load.transactions, tables)
        result.extra.update(
            load_tps=round(load.tps), load_changes_per_s=round(count / load.seconds)
        )
        source = tables_digest(src, tables)
        for attempt in range(repeats):

            def read_only(attempt: int = attempt) -> None:
                seconds = recvlogical(
                    src, f"bench_pgbc_recv_{attempt}", end_lsn, env.limit(timeout), PUBLICATION
                )
                result.others.setdefault(RECVLOGICAL, []).append(count / seconds)

            def native(attempt: int = attempt) -> None:
                name = f"bench_pgbc_native_{attempt}"
                seconds = drain_seconds(
                    src, natives[attempt], name, PUBLICATION, name, env.limit(timeout)
                )
                compare_tables(
                    source, tables_digest(natives[attempt], tables), "native apply worker"
                )
                result.baseline_runs.append(count / seconds)

            def engine(attempt: int = attempt) -> None:
                run_ = env.engine("sync", str(configs[attempt]), "--once", timeout=timeout)
                result.check = compare_tables(
                    source, tables_digest(targets[attempt], tables), "engine sync --once"
                )
                result.runs.append(count / run_.seconds)
                result.peak_rss_mb = max(result.peak_rss_mb or 0.0, run_.peak_rss_mb)

            in_turns(attempt, [read_only, native, engine])
    finally:
        for tgt in targets + natives:
            env.drop_pg_db(tgt)
        env.drop_pg_db(src)
    result.finish()
    result.target_met = result.ratio is not None and result.ratio >= TARGET_NATIVE
    return result


def settle_past_fill(
    env: BenchEnv, src: str, configs: list[Path], fill_end: str, timeout: float
) -> None:
    """Every engine slot's restart point past the fill, as the baselines' slots (created after
    it) have theirs. A logical slot's restart point moves only where its decoding passes a
    running-transactions record with the client's confirmation beyond it; the bgwriter writes
    one every 15 s, so a slot drained right after the fill could keep its restart point before
    the fill's one-million-row transaction, and its timed drain made the walsender decode that
    transaction again first (2.5 s of walsender CPU before the first change, in an attempt
    order that changed from run to run: the engine's attempts spread 60k-86k changes/s).
    ``CHECKPOINT`` writes such a record; one more untimed drain per pipeline passes it."""
    with psycopg.connect(src, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    for config in configs:
        env.engine("sync", str(config), "--once", timeout=timeout)
    with psycopg.connect(src, autocommit=True) as conn:
        behind = conn.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'syncengine_%%' "
            "AND restart_lsn < %s::pg_lsn",
            (fill_end,),
        ).fetchall()
    if behind:
        raise BenchmarkError(f"engine slots still restart before the fill: {behind}")


SCENARIO = Scenario(NAME, TITLE, run, weight=2.5, target=TARGET)
