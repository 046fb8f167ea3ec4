"""Contributed scenarios: ``benchmarks/{conflict_apply,mapping_throughput,apply_throughput}.py``.

Each module (written with the code it measures) exposes ``run(quick: bool) -> dict`` in its own
shape; the suite runs it in a child process (crash isolation, and the child's peak RSS is the
engine code's) and an adapter below turns its dict into a :class:`ScenarioResult`: a rate, a
same-run baseline rate, the module's own goal and what it checked. A module that does not exist
is reported as ``missing``; a dict the adapter cannot read fails the scenario with its keys.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from benchmarks.core import BenchmarkError, Context, Scenario, ScenarioResult
from benchmarks.measure import describe_failure, run_process
from benchmarks.run_module import MARKER


def _conflict_apply(result: ScenarioResult, data: dict[str, Any]) -> None:
    result.baseline = "same apply, no conflicts"
    result.value = float(data["with_conflicts"]["rows_per_s"])
    result.baseline_value = float(data["no_conflicts"]["rows_per_s"])
    result.check = (
        f"module asserts {data['conflicts']:,} conflicts found, merged rows kept both edits"
    )
    result.extra = {k: data[k] for k in ("strategy", "conflicts", "ratio", "rounds") if k in data}


def _mapping_throughput(result: ScenarioResult, data: dict[str, Any]) -> None:
    result.baseline = "hand-written Polars"
    result.value = float(data["mapping_rows_per_s"])
    result.baseline_value = float(data["polars_rows_per_s"])
    goal = data.get("goal_ratio", 1.2)
    result.target = f"time ≤ {goal}× Polars"
    result.target_met = bool(data.get("within_goal"))
    result.check = f"module asserts same {data['rows_out']:,} rows kept as the baseline"
    result.extra = {k: data[k] for k in ("computed_fields", "runs", "ratio") if k in data}


def _apply_throughput(result: ScenarioResult, data: dict[str, Any]) -> None:
    result.baseline = "COPY of the same rows"
    result.value = float(data["insert_rows_per_s"])
    result.baseline_value = float(data["copy_rows_per_s"])
    result.target = "apply time ≤ 2× COPY (insert and update)"
    result.target_met = data["insert_vs_copy"] <= 2 and data["update_vs_copy"] <= 2
    result.check = (
        f"module asserts target = COPY of the same rows ({data['checked_rows']:,} rows, checksum)"
    )
    keys = ("update_rows_per_s", "insert_vs_copy", "update_vs_copy", "replay_vs_copy")
    result.extra = {k: data[k] for k in keys if k in data}


Adapter = Callable[[ScenarioResult, dict[str, Any]], None]
CONTRIBUTED: dict[str, tuple[str, Adapter, float]] = {
    "conflict_apply": ("apply with 30% conflicts under merge", _conflict_apply, 2.0),
    "mapping_throughput": ("mapping throughput", _mapping_throughput, 0.5),
    "apply_throughput": ("apply throughput (Postgres target)", _apply_throughput, 2.0),
}


def make(name: str) -> Scenario:
    title, adapt, weight = CONTRIBUTED[name]

    def run(ctx: Context) -> ScenarioResult:
        if importlib.util.find_spec(f"benchmarks.{name}") is None:
            return ScenarioResult(
                name, title, status="missing", error=f"benchmarks/{name}.py does not exist yet"
            )
        args = [sys.executable, "-m", "benchmarks.run_module", name]
        if ctx.quick:
            args.append("--quick")
        # the modules honour SYNCENGINE_TEST_PG_DSN: reuse the suite's server, no second start
        env = {**os.environ, "SYNCENGINE_TEST_PG_DSN": ctx.env.pg.dsn()}
        proc = run_process(args, env=env, timeout=ctx.env.limit(900), check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
        if proc.returncode != 0 or proc.timed_out or not lines:
            raise BenchmarkError(describe_failure(proc, f"benchmarks/{name}.py"))
        result = from_dict(name, title, json.loads(lines[-1][len(MARKER) :]), adapt)
        result.peak_rss_mb = proc.peak_rss_mb
        return result

    return Scenario(name, title, run, weight=weight)


def from_dict(
    name: str,
    title: str,
    data: dict[str, Any],
    adapt: Callable[[ScenarioResult, dict[str, Any]], None],
) -> ScenarioResult:
    result = ScenarioResult(name, title, rows=data.get("rows"))
    try:
        adapt(result, data)
    except (KeyError, TypeError, ValueError) as exc:
        raise BenchmarkError(
            f"benchmarks/{name}.py returned a dict the suite cannot read ({exc!r}); "
            f"keys: {sorted(data)}"
        ) from None
    if result.value is not None and result.baseline_value:
        result.ratio = result.value / result.baseline_value
    return result


SCENARIOS = [make(name) for name in CONTRIBUTED]
