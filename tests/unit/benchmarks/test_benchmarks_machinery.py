"""The suite's machinery without servers: selection, results files, contributed-module dicts,
peak-RSS measurement of a child process and the document checksum."""

from __future__ import annotations

import json
import sys
import time
import uuid
from decimal import Decimal

import pytest

from benchmarks.__main__ import parse_scales
from benchmarks.checks import Digest, compare, doc_digest
from benchmarks.core import BenchmarkError, CheckFailed, Context, Scenario, ScenarioResult, select
from benchmarks.datagen import document, workload_rows_after, workload_sql
from benchmarks.env import BenchEnv
from benchmarks.measure import run_process
from benchmarks.results import markdown_table, write_all
from benchmarks.scenarios import SCENARIOS, external
from benchmarks.scenarios.external import from_dict


def _noop(ctx: Context) -> ScenarioResult:
    return ScenarioResult("x", "x")


def test_quick_selection_skips_full_only_scenarios_and_only_picks_by_name() -> None:
    scenarios = [Scenario("a", "A", _noop), Scenario("b", "B", _noop, in_quick=False)]
    assert [s.name for s in select(scenarios, quick=True, only=None)] == ["a"]
    assert [s.name for s in select(scenarios, quick=False, only=None)] == ["a", "b"]
    assert [s.name for s in select(scenarios, quick=True, only=["b"])] == ["b"]
    with pytest.raises(BenchmarkError, match="unknown scenario.*known: a, b"):
        select(scenarios, quick=True, only=["c"])


def test_slow_scenarios_run_only_when_asked_for() -> None:
    scenarios = [
        Scenario("a", "A", lambda ctx: ScenarioResult("a", "A")),
        Scenario("s", "S", lambda ctx: ScenarioResult("s", "S"), in_quick=False, slow=True),
    ]
    assert [s.name for s in select(scenarios, quick=False, only=None)] == ["a"]
    assert [s.name for s in select(scenarios, quick=False, only=None, runslow=True)] == ["a", "s"]
    assert [s.name for s in select(scenarios, quick=True, only=None, runslow=True)] == ["a"]
    assert [s.name for s in select(scenarios, quick=False, only=["s"])] == ["s"]


def test_every_issue_scenario_is_registered() -> None:
    names = {s.name for s in SCENARIOS}
    assert {"pg_backfill", "pg_cdc", "pg_latency", "pg_bigtxn", "mongo_cdc", "pg_to_mongo"} <= names
    assert {"conflict_apply", "mapping_throughput", "apply_throughput"} <= names


def test_repeats_and_sizes_follow_the_mode() -> None:
    quick = Context(quick=True, repeat=None, env=None)  # type: ignore[arg-type]
    full = Context(quick=False, repeat=None, env=None)  # type: ignore[arg-type]
    forced = Context(quick=True, repeat=4, env=None)  # type: ignore[arg-type]
    assert (quick.repeats(3), full.repeats(3), forced.repeats(3)) == (1, 3, 4)
    assert (quick.size(10, 100), full.size(10, 100)) == (10, 100)


def test_quick_budget_shortens_timeouts_and_then_refuses() -> None:
    env = BenchEnv()
    try:
        assert env.limit(30) == 30
        env.deadline = time.monotonic() + 10
        assert 8 < env.limit(30) <= 10
        env.deadline = time.monotonic()
        with pytest.raises(BenchmarkError, match="budget used up"):
            env.limit(30)
    finally:
        env.close()


def test_scale_options() -> None:
    assert parse_scales(["0.1", "b=0.01"], {"a", "b"}) == {"*": 0.1, "b": 0.01}
    with pytest.raises(ValueError, match="unknown scenario 'c'"):
        parse_scales(["c=2"], {"a"})
    with pytest.raises(ValueError, match="positive"):
        parse_scales(["0"], {"a"})


def test_finish_takes_medians_and_same_run_ratio() -> None:
    result = ScenarioResult("s", "S", runs=[10.0, 30.0, 20.0], baseline_runs=[40.0, 50.0, 60.0])
    result.finish()
    assert result.value == 20.0 and result.baseline_value == 50.0
    assert result.ratio == pytest.approx(0.4)


def test_results_writer_produces_json_markdown_and_chart(tmp_path) -> None:  # noqa: ANN001
    ok = ScenarioResult(
        "pg_backfill", "backfill", runs=[900.0], baseline_runs=[1000.0], target="≥ 0.7×"
    ).finish()
    ok.target_met, ok.peak_rss_mb, ok.check = True, 120.5, "target = source"
    failed = ScenarioResult("pg_cdc", "cdc", status="failed", error="`syncengine sync` exited 1")
    missing = ScenarioResult("apply_throughput", "apply", status="missing", error="not there")
    paths = write_all([ok, failed, missing], {"mode": "quick"}, tmp_path)
    assert {p.name for p in paths} == {"latest.json", "latest.md", "latest.png"}
    data = json.loads((tmp_path / "latest.json").read_text())
    assert [s["status"] for s in data["scenarios"]] == ["ok", "failed", "missing"]
    assert data["scenarios"][0]["ratio"] == pytest.approx(0.9)
    table = (tmp_path / "latest.md").read_text()
    assert "| backfill | 900 rows/s | 1,000 rows/s | 0.90× | 120 MB | ≥ 0.7×: met |" in table
    assert "FAILED" in table and "MISSING" in table and "exited 1" in table
    assert (tmp_path / "latest.png").read_bytes()[:4] == b"\x89PNG"
    assert markdown_table([ok]).count("\n") == 2


def test_contributed_dicts_become_results_with_same_run_ratios() -> None:
    data = {
        "rows": 20_000,
        "conflicts": 6_000,
        "strategy": "merge",
        "no_conflicts": {"rows_per_s": 10_000},
        "with_conflicts": {"rows_per_s": 5_000},
        "ratio": 2.0,
    }
    result = from_dict("conflict_apply", "conflicts", data, external._conflict_apply)
    assert (result.value, result.baseline_value, result.ratio) == (5000.0, 10000.0, 0.5)
    assert "6,000 conflicts" in (result.check or "")
    with pytest.raises(BenchmarkError, match="cannot read.*keys: \\['rows'\\]"):
        from_dict("conflict_apply", "conflicts", {"rows": 1}, external._conflict_apply)


def test_peak_rss_is_the_childs_own() -> None:
    # the benchmark process itself may be big (baseline documents): Linux would carry its
    # high-water mark into a child's ru_maxrss, so hold 800 MB here while the children run
    ballast = bytearray(800 * 1024 * 1024)
    ballast[::4096] = b"1" * len(ballast[::4096])
    grow = (
        "import time; x = bytearray(300 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096]); "
        "time.sleep(0.3)"
    )
    big = run_process([sys.executable, "-c", grow])
    small = run_process([sys.executable, "-c", "import time; time.sleep(0.3)"])
    del ballast
    assert 300 < big.peak_rss_mb < 500, big.peak_rss_mb
    assert small.peak_rss_mb < 100, small.peak_rss_mb
    with pytest.raises(BenchmarkError, match="exited 3"):
        run_process([sys.executable, "-c", "import sys; sys.exit(3)"], what="child")


def test_doc_digest_ignores_type_spelling_but_not_values() -> None:
    doc = document(7)
    row = {
        "id": 7,
        "qty": doc["qty"],
        "name": doc["name"],
        "price": Decimal(str(doc["price"])).quantize(Decimal("0.01")),
        "created": doc["created"],
        "active": doc["active"],
        "attrs": json.dumps(doc["attrs"]),
        "ref": uuid.UUID(doc["ref"]),
    }
    assert doc_digest([doc]) == doc_digest([row])
    changed = {**doc, "qty": doc["qty"] + 1}
    with pytest.raises(CheckFailed, match="does not match"):
        compare(doc_digest([doc]), doc_digest([changed]), "t")
    assert compare(Digest(1, "5"), Digest(1, "5"), "t").startswith("target = source")


def test_workload_shape() -> None:
    assert workload_rows_after(0) == 70 and workload_rows_after(10) == 70 + 650
    text = workload_sql(0, 9).as_string()
    assert "COMMIT" in text and "generate_series((base + 1)::bigint, (base + 70)::bigint)" in text
