"""Two-way Postgres ↔ Postgres: what reading and writing both sides costs, against the same
load drained one-way, in the same run.

Three arms, each on fresh databases holding the seed rows, each drained by ``syncengine sync
--once`` after the load was committed (the initial backfill runs before, off the clock):

* **one-way** (the baseline): the 70/25/5 workload on the source, a one-way pipeline;
* **two-way**: the same workload on the source, ``two_way: true`` with ``timestamp``: the
  forward direction applies under its replication origin and records each row's version, the
  reverse direction reads those writes back as echoes (its shadow bookkeeping);
* **two-way, every key in conflict**: the same workload on *both* sides, then one more update
  of every row on the target: every key the load touched was changed on both sides, so both
  directions decide each one by versions (last writer wins); the target's final update is the
  newest, so both sides end with the target's rows. Drained until the sides are equal (a
  correction can take a second round, README *Two-way sync*), every round on the clock.

Rates are the changes the load committed (both sides' in the conflict arm) per wall second of
the drain; ``extra`` has the ratios of the medians and, per attempt, each two-way arm's drain
time over the one-way drain's of the same attempt (the conflict arm drains its own and the
other side's load: 2.7 times the changes). Every arm's check: both sides equal (count and
checksum), with the expected row count; the conflict arm's, that the target's last update
won.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

from benchmarks.checks import compare, expect_rows, pg_digest
from benchmarks.core import CheckFailed, Context, Scenario, ScenarioResult
from benchmarks.datagen import (
    TABLE,
    TXN_CHANGES,
    create_table,
    seed_for_workload,
    workload_rows_after,
    workload_sql,
)
from benchmarks.env import BenchEnv, pg_source, pg_target

NAME = "two_way"
TITLE = "Two-way Postgres↔Postgres vs one-way"
TARGET = "none set (issue 20 asks for the ratios); every arm: both sides equal"
ONE_WAY, CONFLICTS = "one-way", "two-way, every key in conflict"
ROUNDS = 3
"""``sync --once`` rounds the conflict arm may take before the sides must be equal."""


def run(ctx: Context) -> ScenarioResult:
    env = ctx.env
    txns = ctx.size(60, 2_000)
    changes = txns * TXN_CHANGES
    result = ScenarioResult(
        NAME, TITLE, unit="changes/s", baseline=ONE_WAY, rows=changes, target=TARGET
    )
    for attempt in range(ctx.repeats(3)):
        seconds, _ = drain(env, f"bench_1way_{attempt}", txns, two_way=False, conflicts=False)
        result.baseline_runs.append(changes / seconds)
        seconds, _ = drain(env, f"bench_2way_{attempt}", txns, two_way=True, conflicts=False)
        result.runs.append(changes / seconds)
        one_way = changes / result.baseline_runs[-1]
        result.extra.setdefault("two_way_seconds_vs_one_way", []).append(
            round(seconds / one_way, 3)
        )
        seconds, rounds = drain(env, f"bench_2wayc_{attempt}", txns, two_way=True, conflicts=True)
        result.extra.setdefault("conflict_arm_seconds_vs_one_way", []).append(
            round(seconds / one_way, 3)
        )
        # both sides' load, plus the target's update of every row
        both = 2 * changes + workload_rows_after(txns)
        result.others.setdefault(CONFLICTS, []).append(both / seconds)
        result.extra.setdefault("conflict_arm_rounds", []).append(rounds)
    result.check = f"both sides equal in every arm ({workload_rows_after(txns)} rows)"
    result.finish()
    conflicted = result.other_values.get(CONFLICTS)
    if result.value and result.baseline_value:
        result.extra["two_way_vs_one_way"] = round(result.value / result.baseline_value, 3)
    if conflicted and result.baseline_value:
        result.extra["conflicts_vs_one_way"] = round(conflicted / result.baseline_value, 3)
    return result


def drain(
    env: BenchEnv, name: str, txns: int, *, two_way: bool, conflicts: bool
) -> tuple[float, int]:
    """Seconds the drain took (all rounds) and how many ``sync --once`` rounds it took; raises
    :class:`CheckFailed` when the sides differ after them."""
    src, tgt = env.new_pg_db(f"{name}_a"), env.new_pg_db(f"{name}_b")
    try:
        for dsn in (src, tgt):
            with psycopg.connect(dsn, autocommit=True) as conn:
                create_table(conn)
        with psycopg.connect(src, autocommit=True) as conn:
            seed_for_workload(conn)
        pipeline: dict[str, object] = {
            "source": pg_source(src, [f"public.{TABLE}"]),
            "target": pg_target(tgt),
            "batch": {"max_rows": 10_000, "max_wait": "200ms"},
        }
        if two_way:
            pipeline |= {"two_way": True, "conflicts": {"strategy": "timestamp"}}
        config = str(env.write_config(name, pipeline))
        env.engine("sync", config, "--once", timeout=600)  # backfill, slots: off the clock
        sides = [src, tgt] if conflicts else [src]
        for dsn in sides:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(workload_sql(0, txns - 1))
        if conflicts:  # the newest write to every row: the target's
            with psycopg.connect(tgt, autocommit=True) as conn:
                conn.execute(sql.SQL("UPDATE {} SET qty = qty + 1").format(sql.Identifier(TABLE)))
        seconds, rounds = 0.0, 0
        while rounds < (ROUNDS if conflicts else 1):
            rounds += 1
            seconds += env.engine("sync", config, "--once", timeout=900).seconds
            if pg_digest(src, TABLE) == pg_digest(tgt, TABLE):
                break
        source = pg_digest(src, TABLE)
        expect_rows(source, workload_rows_after(txns), f"{name}: source after the drain")
        compare(source, pg_digest(tgt, TABLE), f"{name} after {rounds} round(s)")
        if conflicts:
            _expect_target_won(src)
        return seconds, rounds
    finally:
        for dsn in (src, tgt):
            env.drop_pg_db(dsn)
        if two_way:
            drop_origins(env, [f"syncengine_{name}", f"syncengine_{name}_reverse"])


def drop_origins(env: BenchEnv, names: list[str]) -> None:
    """Replication origins are the cluster's, not a database's: each one a run leaves holds
    one of the server's ``max_replication_origins`` slots."""
    with psycopg.connect(env.pg.dsn(), autocommit=True) as conn:
        for origin in names:
            found = conn.execute("SELECT pg_replication_origin_oid(%s)", (origin,)).fetchone()
            if found is not None and found[0] is not None:
                conn.execute("SELECT pg_replication_origin_drop(%s)", (origin,))


def _expect_target_won(src: str) -> None:
    """The target's last update is the newest write to every row: the source took it too."""
    with psycopg.connect(src) as conn:
        (updated,) = conn.execute(  # type: ignore[misc]
            sql.SQL("SELECT count(*) FROM {} WHERE qty = ((id * 7919 + 0) % 100000) + 1").format(
                sql.Identifier(TABLE)
            )
        ).fetchone()
    if not updated:
        raise CheckFailed("conflict arm: no row holds the target's last update")


SCENARIO = Scenario(NAME, TITLE, run, weight=1.5, target=TARGET)
