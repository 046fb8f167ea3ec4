"""``python -m benchmarks run [--quick] [--only NAME ...] [--repeat N]`` and ``list``."""

from __future__ import annotations

import argparse
import compileall
import datetime as dt
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks.core import BenchmarkError, Context, Scenario, ScenarioResult, select
from benchmarks.env import BenchEnv, syncengine_exe
from benchmarks.measure import run_process
from benchmarks.results import RESULTS_DIR, machine, markdown_table, write_all
from benchmarks.scenarios import SCENARIOS

QUICK_BUDGET = 360.0
"""Seconds for a whole ``--quick`` run (plus server start and teardown: about 6 minutes)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the scenarios and write benchmarks/results/latest.*")
    run.add_argument("--quick", action="store_true", help="small sizes, one run (about 6 min)")
    run.add_argument("--only", action="append", metavar="NAME", help="run only NAME (repeatable)")
    run.add_argument("--repeat", type=int, default=None, help="runs per scenario (median)")
    run.add_argument(
        "--scale",
        action="append",
        default=[],
        metavar="[NAME=]F",
        help="multiply every size by F, or only NAME's (repeatable; default 1: issue sizes)",
    )
    run.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"time budget of the whole suite (default: {QUICK_BUDGET:.0f} with --quick, "
        "none otherwise); each scenario gets an equal share of what is left",
    )
    run.add_argument(
        "--runslow", action="store_true", help="also the slow scenarios (10M-row linearity)"
    )
    run.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    run.add_argument("--no-chart", action="store_true")
    sub.add_parser("list", help="list the scenarios")
    args = parser.parse_args(argv)
    if args.command == "list":
        for s in SCENARIOS:
            mode = "slow" if s.slow else "quick+full" if s.in_quick else "full only"
            print(f"{s.name:20} {mode:11} {s.title}")
        return 0
    try:
        chosen = select(SCENARIOS, args.quick, args.only, args.runslow)
    except BenchmarkError as exc:
        parser.error(str(exc))
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    try:
        scales = parse_scales(args.scale, {s.name for s in SCENARIOS})
    except ValueError as exc:
        parser.error(f"--scale: {exc}")
    budget = args.budget if args.budget is not None else (QUICK_BUDGET if args.quick else None)
    options = {"repeat": args.repeat, "scale": scales, "budget": budget}
    signal.signal(signal.SIGTERM, _terminate)  # so servers are torn down on `timeout`/kill
    return run_suite(chosen, args.quick, options, args.results_dir, not args.no_chart)


def parse_scales(values: list[str], known: set[str]) -> dict[str, float]:
    """``["0.1", "pg_to_mongo=0.01"]`` → ``{"*": 0.1, "pg_to_mongo": 0.01}``."""
    scales: dict[str, float] = {}
    for value in values:
        name, _, factor = value.rpartition("=")
        if name and name not in known:
            raise ValueError(f"unknown scenario '{name}'")
        try:
            number = float(factor)
        except ValueError:
            raise ValueError(f"'{value}' is not F or NAME=F") from None
        if number <= 0:
            raise ValueError(f"'{value}': the factor must be positive")
        scales[name or "*"] = number
    return scales


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def run_suite(
    chosen: list[Scenario],
    quick: bool,
    options: dict[str, Any],
    results_dir: Path,
    chart: bool,
) -> int:
    meta: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "started": _now(),
        "machine": machine(),
        **options,
        "scenarios": [s.name for s in chosen],
    }
    compile_engine()
    meta["cli_start_s"] = cli_start_seconds()
    env = BenchEnv()
    ctx = Context(quick=quick, repeat=options["repeat"], env=env)
    results: list[ScenarioResult] = []
    suite_started = time.perf_counter()
    try:
        env.pg  # noqa: B018 - start the servers up front, not inside a scenario's figures
        if any(s.mongo for s in chosen):
            env.mongo  # noqa: B018
    except BaseException:
        env.close()
        raise
    budget_end = time.monotonic() + options["budget"] if options["budget"] else None
    try:
        for index, scenario in enumerate(chosen):
            print(f"▶ {scenario.name}: {scenario.title}", flush=True)
            if budget_end is not None:
                weights = sum(s.weight for s in chosen[index:])
                share = (budget_end - time.monotonic()) * scenario.weight / weights
                env.deadline = time.monotonic() + share
            scales = options["scale"]
            ctx.scale = scales.get(scenario.name, scales.get("*", 1.0))
            started = time.perf_counter()
            result = run_one(scenario, ctx)
            result.seconds = round(time.perf_counter() - started, 1)
            results.append(result)
            print(f"  {summary(result)}", flush=True)
            meta["finished"] = _now()
            meta["seconds"] = round(time.perf_counter() - suite_started, 1)
            write_all(results, meta, results_dir, chart=False)
    finally:
        env.close()
    meta["finished"] = _now()
    meta["seconds"] = round(time.perf_counter() - suite_started, 1)
    paths = write_all(results, meta, results_dir, chart=chart)
    print()
    print(markdown_table(results))
    print(
        f"\n{len(results)} scenario(s) in {meta['seconds']:.0f} s; wrote "
        + ", ".join(str(p) for p in paths)
    )
    return 0 if all(r.status == "ok" for r in results) else 1


def compile_engine() -> None:
    """Write the engine's bytecode before any figure: with ``PYTHONDONTWRITEBYTECODE`` set (as
    on the benchmark machine) an editable install has none, and every engine start would
    compile about 120 modules again (0.05–0.07 s of CPU inside every engine figure, F37).
    ``compileall`` writes it whatever that variable says; starts only read it."""
    root = Path(__file__).resolve().parent.parent
    for package in ("syncengine", "mappings", "strategies"):
        compileall.compile_dir(root / package, quiet=1)


def cli_start_seconds() -> float | None:
    """Wall time of ``syncengine --help``: the fixed cost inside every engine figure."""
    try:
        return round(run_process([syncengine_exe(), "--help"], timeout=60).seconds, 2)
    except BenchmarkError:
        return None


def run_one(scenario: Scenario, ctx: Context) -> ScenarioResult:
    """Run one scenario; any failure becomes a ``failed`` result with a readable message."""
    try:
        return scenario.run(ctx)
    except BenchmarkError as exc:
        return ScenarioResult(
            scenario.name, scenario.title, status="failed", error=str(exc), target=scenario.target
        )
    except Exception as exc:  # noqa: BLE001 - one broken scenario must not stop the suite
        frames = traceback.format_exception(exc)
        return ScenarioResult(
            scenario.name,
            scenario.title,
            status="failed",
            error=f"{type(exc).__name__}: {exc}\n" + "".join(frames[-3:]),
            target=scenario.target,
        )


def summary(result: ScenarioResult) -> str:
    if result.status != "ok":
        return f"{result.status.upper()} ({result.seconds:.0f} s): {result.error}"
    ratio = f", {result.ratio:.2f}× baseline" if result.ratio is not None else ""
    rss = f", peak RSS {result.peak_rss_mb:.0f} MB" if result.peak_rss_mb else ""
    met = {True: "target met", False: "target NOT met", None: "no target"}[result.target_met]
    return (
        f"ok ({result.seconds:.0f} s): {result.value:,.0f} {result.unit}{ratio}{rss}; {met}; "
        f"{result.check}"
    )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


if __name__ == "__main__":
    sys.exit(main())
