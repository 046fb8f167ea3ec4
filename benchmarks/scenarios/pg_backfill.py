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
waits for. Its per-phase seconds (when the engine logs them) are in the details, and so is the
size of the target's primary key after the engine and after the binary pipe (``key_index_mb``:
the engine builds it after the load, the pipe's table has it from the start).
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
        key_mb: dict[str, float] = {}
        result.extra["key_index_mb"] = key_mb
        for attempt in range(ctx.repeats(3)):
            seconds = baseline(
                env,
                BINARY,
                source,
                lambda t: copy_pipe(src, t, [TABLE], True, env.limit(timeout)),
                sizes=key_mb,
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
            seconds, rss, check, phases = engine_backfill(
                env, src, source, attempt, timeout, key_mb
            )
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


def baseline(
    env: BenchEnv,
    label: str,
    source: object,
    copy: object,
    create: bool = True,
    sizes: dict[str, float] | None = None,
) -> float:
    """Seconds of ``copy(target_dsn)`` into a fresh database, checked against ``source``;
    the target's key size goes to ``sizes[label]`` when given."""
    tgt = env.new_pg_db("bf_base")
    try:
        if create:
            with psycopg.connect(tgt, autocommit=True) as conn:
                create_table(conn)
        seconds = copy(tgt)  # type: ignore[operator]
        compare(source, pg_digest(tgt, TABLE), f"baseline {label}")  # type: ignore[arg-type]
        if sizes is not None:
            sizes[label] = key_index_mb(tgt)
        return float(seconds)
    finally:
        env.drop_pg_db(tgt)


def engine_backfill(
    env: BenchEnv,
    src: str,
    source_digest: object,
    attempt: int,
    timeout: float,
    sizes: dict[str, float],
) -> tuple[float, float, str, dict[str, float]]:
    """``syncengine backfill`` into a fresh database: (seconds, peak RSS MB, check, phases);
    the target's key size goes to ``sizes["engine"]``."""
    tgt = env.new_pg_db("bf_tgt")
    name = f"bench_backfill_{attempt}"
    try:
        config = env.write_config(
            name, {"source": pg_source(src, [f"public.{TABLE}"]), "target": pg_target(tgt)}
        )
        run = env.engine("backfill", str(config), "--parallel", "2", timeout=timeout)
        check = compare(source_digest, pg_digest(tgt, TABLE), "engine backfill")  # type: ignore[arg-type]
        sizes["engine"] = key_index_mb(tgt)
        return run.seconds, run.peak_rss_mb, check, phase_seconds(run.stderr)
    finally:
        env.drop_pg_db(tgt)
        env.drop_slots(src)


def key_index_mb(dsn: str) -> float:
    """MB of the benchmark table's primary key (0 when it has none: a check that fails)."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT pg_relation_size(indexrelid) FROM pg_index "
            "WHERE indrelid = %s::regclass AND indisprimary",
            (TABLE,),
        ).fetchone()
    return round((row[0] if row else 0) / 2**20, 1)


SCENARIO = Scenario(NAME, TITLE, run, weight=2.0, target=TARGET)
