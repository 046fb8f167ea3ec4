"""Contributed scenarios: ``benchmarks/{mapping_throughput,apply_throughput,conflict_apply}.py``.

Each module (written with the code it measures) exposes ``run(quick: bool) -> dict``; the
suite runs it in a child process (peak RSS, crash isolation) and reads these keys, all
optional except a rate: ``value`` (or ``rows_per_s`` / ``events_per_s``), ``runs``, ``unit``,
``baseline`` (what the baseline is), ``baseline_value``, ``baseline_runs``, ``ratio``,
``rows``, ``check``, ``target``, ``target_met``, ``ok`` / ``error``; anything else is kept as
details. A module that does not exist yet is reported as ``missing``, not as a failure.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from typing import Any

from benchmarks.core import BenchmarkError, Context, Scenario, ScenarioResult
from benchmarks.measure import describe_failure, run_process
from benchmarks.run_module import MARKER

CONTRIBUTED = {
    "conflict_apply": "apply with 30% conflicts under merge",
    "mapping_throughput": "mapping throughput",
    "apply_throughput": "apply throughput",
}
FIELDS = {
    "unit",
    "baseline",
    "baseline_value",
    "baseline_runs",
    "ratio",
    "rows",
    "check",
    "target",
    "target_met",
    "runs",
    "value",
    "peak_rss_mb",
}
RATE_ALIASES = ("value", "rows_per_s", "events_per_s", "changes_per_s", "median")


def make(name: str, title: str) -> Scenario:
    def run(ctx: Context) -> ScenarioResult:
        if importlib.util.find_spec(f"benchmarks.{name}") is None:
            return ScenarioResult(
                name, title, status="missing", error=f"benchmarks/{name}.py does not exist yet"
            )
        args = [sys.executable, "-m", "benchmarks.run_module", name]
        if ctx.quick:
            args.append("--quick")
        proc = run_process(args, timeout=ctx.env.limit(900), check=False)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
        if proc.returncode != 0 or proc.timed_out or not lines:
            raise BenchmarkError(describe_failure(proc, f"benchmarks/{name}.py"))
        result = from_dict(name, title, json.loads(lines[-1][len(MARKER) :]))
        result.peak_rss_mb = result.peak_rss_mb or proc.peak_rss_mb
        return result

    return Scenario(name, title, run)


def from_dict(name: str, title: str, data: dict[str, Any]) -> ScenarioResult:
    """A contributed module's dict as a result; a rate is required, the rest is optional."""
    if data.get("ok") is False or data.get("error"):
        raise BenchmarkError(f"benchmarks/{name}.py reported failure: {data.get('error', data)}")
    result = ScenarioResult(name, str(data.get("title", title)))
    for key in FIELDS & data.keys():
        setattr(result, key, data[key])
    if result.value is None:
        rate = next((data[k] for k in RATE_ALIASES if isinstance(data.get(k), int | float)), None)
        result.value = float(rate) if rate is not None else None
    if result.value is None and not result.runs:
        raise BenchmarkError(f"benchmarks/{name}.py returned no rate (keys: {sorted(data)})")
    result.extra = {k: v for k, v in data.items() if k not in FIELDS | {"ok", "title"}}
    if result.runs:
        result.value = None
    result.finish()
    if result.ratio is None and isinstance(data.get("ratio"), int | float):
        result.ratio = float(data["ratio"])
    return result


SCENARIOS = [make(name, title) for name, title in CONTRIBUTED.items()]
