"""Add a table to a running daemon while two others stream (issue 19): does the new table's
snapshot slow the others down?

1. Tables ``bench_a`` and ``bench_b`` (10,000 rows each) are streamed by ``syncengine run``
   (``batch.max_wait: 100ms``); ``bench_c`` (1,000,000 rows of the mixed-column table; quick
   50,000) exists at the source but is not in the config.
2. A writer per table upserts random keys of A and B at a fixed rate (1,000 rows/s each; quick
   200), one transaction every 50 ms. Each table's row ``id = 1`` is also a probe
   (:class:`benchmarks.probe.Prober` on that table): stamped from the source's clock every
   100 ms and read on the target, so the lag measured is A's and B's own.
3. **before**: 30 s (quick 5 s) of the load: p50/p99 lag of A and B.
4. ``bench_c`` is added to ``tables:`` and ``syncengine reload`` is run; **during**: every stamp
   made from the reload until C's snapshot request is ``done`` in the state store (which
   includes the pipeline's drain and restart that a reload does). C's snapshot time is that
   span. Also reported: the restart alone (reload until the request is ``running``) and the
   p99 of the stamps made while C is copied (``*_copy_only_p99_ms``).
5. The writers and stamps stop, the daemon drains (SIGTERM, exit 0), and A, B (row checksums)
   and C (the mixed-column checksum) are compared with the source.

Figure: C's rows ÷ its snapshot seconds. Target: p99 during ≤ 2× p99 before, for A and for B.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import yaml
from psycopg import sql

from benchmarks.checks import compare, compare_tables, pg_digest, tables_digest
from benchmarks.core import BenchmarkError, Context, Scenario, ScenarioResult
from benchmarks.datagen import create_table, insert_rows
from benchmarks.env import BenchEnv, flush_writes, pg_source, pg_target
from benchmarks.measure import Process, describe_failure
from benchmarks.probe import Prober
from benchmarks.scenarios.pg_latency import percentile

NAME = "pg_add_table"
TITLE = "add a table while two others stream"
STREAMED = ("bench_a", "bench_b")
ADDED = "bench_c"
KEYS = 10_000
STEP_S = 0.05
MAX_WAIT = "100ms"
TARGET_RATIO = 2.0
TARGET = f"A's and B's p99 lag during C's snapshot ≤ {TARGET_RATIO:g}× before"

DDL = "CREATE TABLE {} (id int PRIMARY KEY, seq bigint NOT NULL, ts timestamptz NOT NULL, pad text)"
FILL = (
    "INSERT INTO {} SELECT i, 0, clock_timestamp(), md5(i::text) FROM generate_series(1, %s) AS i"
)
UPSERT = (
    "INSERT INTO {} (id, seq, ts, pad) SELECT k, 0, clock_timestamp(), md5(random()::text) "
    "FROM unnest(%s::int[]) AS k ON CONFLICT (id) DO UPDATE SET ts = EXCLUDED.ts, "
    "pad = EXCLUDED.pad"
)


def run(ctx: Context) -> ScenarioResult:
    env = ctx.env
    rows_c = ctx.size(50_000, 1_000_000)
    rate = 200 if ctx.quick else 1_000  # rows/s per streamed table: not scaled
    before_s = 5 if ctx.quick else 30
    result = ScenarioResult(NAME, TITLE, unit="rows/s", rows=rows_c, target=TARGET)
    src, tgt = env.new_pg_db("add_src"), env.new_pg_db("add_tgt")
    daemon: Process | None = None
    probers: dict[str, Prober] = {}
    writers: list[Writer] = []
    try:
        with psycopg.connect(src, autocommit=True) as conn:
            for table in STREAMED:
                conn.execute(sql.SQL(DDL).format(sql.Identifier(table)))
                conn.execute(sql.SQL(FILL).format(sql.Identifier(table)), (KEYS,))
            create_table(conn, ADDED)
            insert_rows(conn, 1, rows_c, ADDED)
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(ADDED)))
            flush_writes(conn)  # the load's writeback is not C's snapshot's nor the stream's
        config = env.write_config(
            "bench_add",
            {
                "source": pg_source(src, [f"public.{t}" for t in STREAMED]),
                "target": pg_target(tgt),
                "batch": {"max_rows": 10_000, "max_wait": MAX_WAIT},
            },
        )
        daemon = env.start_engine("run", str(config))

        def alive() -> None:
            assert daemon is not None
            if not daemon.alive():
                raise BenchmarkError(describe_failure(daemon.wait(), "engine run"))

        probers = {t: Prober(src, tgt, t) for t in STREAMED}
        for prober in probers.values():
            prober.next_arrival(env.limit(600), alive)  # backfilled and streaming
        writers = [Writer(src, t, rate) for t in STREAMED]
        time.sleep(1)  # the writers' first groups are in flight
        first = {t: p.last_stamp + 1 for t, p in probers.items()}
        _sleep(before_s, alive, writers)
        marks = {t: p.last_stamp for t, p in probers.items()}
        started = time.monotonic()
        _add_table(config)
        env.engine("reload", str(config), timeout=60)
        _await_request(config, env, alive, writers, ("running", "done"))
        restart_s = time.monotonic() - started
        copying = {t: p.last_stamp + 1 for t, p in probers.items()}
        _await_request(config, env, alive, writers, ("done",))
        snapshot_s = time.monotonic() - started
        during_last = {t: p.last_stamp for t, p in probers.items()}
        written = sum(w.finish() for w in writers)
        writers = []
        figures = {}
        copy_p99: dict[str, float | None] = {}
        for table, prober in probers.items():
            # a stamp made after the writers' last commit: the stream applies in commit order,
            # so once it arrived so did their rows (the last stamp before stopping could
            # precede that commit, and SIGTERM leaves what the daemon had not read yet)
            prober.next_arrival(env.limit(600), alive)
            prober.stop_stamping()
            prober.wait_arrival(prober.last_stamp, env.limit(600), alive)
            before = sorted(prober.lags_ms(first[table], marks[table]))
            during = sorted(prober.lags_ms(marks[table] + 1, during_last[table]))
            figures[table] = (
                percentile(before, 50),
                percentile(before, 99),
                percentile(during, 50),
                percentile(during, 99),
            )
            copy = sorted(prober.lags_ms(copying[table], during_last[table]))
            copy_p99[table] = percentile(copy, 99) if copy else None
        stopped, daemon = daemon.stop(60), None
        if stopped.returncode != 0:
            raise BenchmarkError(describe_failure(stopped, "engine run (SIGTERM)"))
        result.peak_rss_mb = stopped.peak_rss_mb
        result.check = (
            compare_tables(tables_digest(src, STREAMED), tables_digest(tgt, STREAMED), "A, B")
            + "; C: "
            + compare(pg_digest(src, ADDED), pg_digest(tgt, ADDED), ADDED)
        )
    finally:
        for writer in writers:
            writer.halt.set()
        for prober in probers.values():
            prober.close()
        if daemon is not None:
            daemon.stop(60)
        env.drop_pg_db(tgt)
        env.drop_pg_db(src)
    ratios = {t: during_p99 / max(p99, 1.0) for t, (_, p99, _, during_p99) in figures.items()}
    for table, (p50, p99, during_p50, during_p99) in figures.items():
        short = table.removeprefix("bench_")
        result.extra.update(
            {
                f"{short}_before_p50_ms": p50,
                f"{short}_before_p99_ms": p99,
                f"{short}_during_p50_ms": during_p50,
                f"{short}_during_p99_ms": during_p99,
                f"{short}_p99_ratio": round(ratios[table], 2),
                f"{short}_copy_only_p99_ms": copy_p99[table],
            }
        )
    result.extra.update(
        snapshot_s=round(snapshot_s, 2),
        restart_s=round(restart_s, 2),
        rows_added=rows_c,
        rate_per_table=rate,
        rows_written=written,
        before_s=before_s,
    )
    result.runs = [rows_c / snapshot_s]
    worst = max(ratios, key=ratios.__getitem__)
    _, p99, _, during_p99 = figures[worst]
    result.headline = (
        f"p99 lag of {worst} {p99:,.0f} ms before, {during_p99:,.0f} ms during C's snapshot "
        f"({ratios[worst]:.2f}×; {copy_p99[worst] or 0:,.0f} ms while C was copied, after the "
        f"{restart_s:.1f} s restart); C: {rows_c:,} rows in {snapshot_s:.1f} s"
    )
    result.finish()
    result.target_met = all(r <= TARGET_RATIO for r in ratios.values())
    return result


class Writer:
    """Upserts ``rate`` random keys (2..KEYS: row 1 is the probe) of ``table`` per second, one
    transaction every :data:`STEP_S`, until :meth:`finish`."""

    def __init__(self, dsn: str, table: str, rate: int) -> None:
        self.dsn, self.rate = dsn, rate
        self.statement = sql.SQL(UPSERT).format(sql.Identifier(table))
        self.halt = threading.Event()
        self.rows = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        rng = random.Random(self.statement.as_string())
        per_step = max(1, round(self.rate * STEP_S))
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                start, k = time.monotonic(), 0
                while not self.halt.is_set():
                    conn.execute(self.statement, (rng.sample(range(2, KEYS + 1), per_step),))
                    self.rows += per_step
                    k += 1
                    delay = start + k * STEP_S - time.monotonic()
                    if delay > 0:
                        self.halt.wait(delay)
        except BaseException as exc:  # noqa: BLE001 - reported by check()/finish()
            self.error = exc

    def check(self) -> None:
        if self.error is not None:
            raise BenchmarkError(f"writer failed: {self.error}")

    def finish(self) -> int:
        self.halt.set()
        self.thread.join(30)
        self.check()
        return self.rows


def _sleep(seconds: float, alive: Callable[[], None], writers: list[Writer]) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _watch(alive, writers)
        time.sleep(0.2)


def _watch(alive: Callable[[], None], writers: list[Writer]) -> None:
    alive()
    for writer in writers:
        writer.check()


def _add_table(config: Path) -> None:
    """``bench_c`` appended to the pipeline's ``tables:`` (what a person edits)."""
    data = yaml.safe_load(config.read_text())
    (pipeline,) = data["pipelines"].values()
    pipeline["source"]["tables"].append(f"public.{ADDED}")
    config.write_text(yaml.safe_dump(data, sort_keys=False))


def _await_request(
    config: Path,
    env: BenchEnv,
    alive: Callable[[], None],
    writers: list[Writer],
    wanted: tuple[str, ...],
) -> None:
    """Until the daemon's snapshot request for ``bench_c`` has a ``wanted`` status (the state
    store): ``running`` once the restarted pipeline streams and starts the copy, ``done``."""
    state = yaml.safe_load(config.read_text())["state"]
    deadline = time.monotonic() + env.limit(3600)
    while True:
        _watch(alive, writers)
        status = _request_status(state)
        if status in wanted:
            return
        if status == "failed":
            raise BenchmarkError(f"the snapshot of {ADDED} failed (see the daemon's log)")
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{ADDED} not snapshotted in time (request: {status})")
        time.sleep(0.05)


def _request_status(state: str) -> str | None:
    if not Path(state).exists():
        return None
    with sqlite3.connect(f"file:{state}?mode=ro", uri=True, timeout=5) as db:
        try:
            row = db.execute(
                "SELECT status FROM table_requests WHERE source_table = ? ORDER BY id DESC",
                (f"public.{ADDED}",),
            ).fetchone()
        except sqlite3.OperationalError:  # the daemon has not created its tables yet
            return None
    return str(row[0]) if row else None


SCENARIO = Scenario(NAME, TITLE, run, weight=1.5, target=TARGET)
