"""The pure parts of the issue 16/17 baselines: pgbench output, phase lines, extra baselines,
probe lag arithmetic (the scenarios themselves run against real servers: ``python -m
benchmarks run --quick --only NAME``)."""

from __future__ import annotations

import datetime as dt

import pytest

from benchmarks.core import BenchmarkError, ScenarioResult
from benchmarks.pgtools import KEYED, changes, parse_pgbench
from benchmarks.phases import phase_seconds
from benchmarks.probe import Prober
from benchmarks.results import markdown, markdown_table
from benchmarks.scenarios import SCENARIOS

PGBENCH_OUT = """pgbench (15.10)
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 1
number of clients: 4
duration: 5 s
number of transactions actually processed: 12034
number of failed transactions: 0 (0.000%)
latency average = 1.661 ms
tps = 2406.512345 (without initial connection time)
"""


def test_new_scenarios_are_registered_and_run_in_quick_mode() -> None:
    quick = {s.name for s in SCENARIOS if s.in_quick}
    assert {"pgbench_backfill", "pgbench_cdc", "pgbench_live"} <= quick


def test_pgbench_output_gives_transactions_and_tps() -> None:
    run = parse_pgbench(PGBENCH_OUT, 5.2)
    assert (run.transactions, run.tps) == (12034, pytest.approx(2406.512345))
    assert changes(run.transactions, list(KEYED)) == 3 * 12034
    assert changes(run.transactions, [*KEYED, "pgbench_history"]) == 4 * 12034


def test_pgbench_failures_and_garbage_are_refused() -> None:
    with pytest.raises(BenchmarkError, match="2 transactions failed"):
        parse_pgbench(PGBENCH_OUT.replace("failed transactions: 0", "failed transactions: 2"), 5)
    with pytest.raises(BenchmarkError, match="not understood"):
        parse_pgbench("connection refused", 1)


def test_phase_line_is_read_and_its_absence_is_empty() -> None:
    stderr = (
        "10:00:00 INFO    syncengine.runner: p: backfill complete, 5 rows\n"
        "10:00:00 INFO    syncengine.runner: p: backfill phases: read 1.25 s, map 0.40 s, "
        "resolve 12.00 s, apply 3.10 s\n"
    )
    assert phase_seconds(stderr) == {"read": 1.25, "map": 0.4, "resolve": 12.0, "apply": 3.1}
    assert phase_seconds("no such line") == {}
    stream = "10:00:09 INFO    syncengine.runner: p: stream phases: read 0.50 s, decode 2.25 s\n"
    assert phase_seconds(stderr + stream) == {"read": 0.5, "decode": 2.25}


def test_further_baselines_get_medians_ratios_and_skips_in_the_table() -> None:
    result = ScenarioResult("s", "S", runs=[100.0], baseline_runs=[200.0], baseline="binary")
    result.others = {"Sling": [20.0, 50.0, 40.0]}
    result.skipped = {"other": "not installed here"}
    result.finish()
    assert result.other_values == {"Sling": 40.0}
    assert result.other_ratios == {"Sling": 2.5}
    row = markdown_table([result]).splitlines()[-1]
    assert "200 rows/s (binary); Sling: 40 (2.50×); other: skipped" in row
    assert "other skipped: not installed here" in markdown([result], {})


def test_probe_lag_counts_overtaken_stamps_as_arrived_with_the_newer_one() -> None:
    prober = Prober.__new__(Prober)  # the arithmetic only: no threads, no servers
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    prober.stamps = {k: t0 + dt.timedelta(milliseconds=100 * k) for k in (1, 2, 3)}
    seen_at = t0 + dt.timedelta(milliseconds=450)  # one poll saw seq 3: stamps 1-3 arrived
    prober.arrivals = dict.fromkeys((1, 2, 3), seen_at)
    assert prober.lags_ms(1, 3) == pytest.approx([350.0, 250.0, 150.0])
