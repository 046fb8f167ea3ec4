"""``latest.json`` (everything), ``latest.md`` (the table) and ``latest.png`` (the chart)."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.core import ScenarioResult

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def write_all(
    results: Sequence[ScenarioResult],
    meta: dict[str, Any],
    directory: Path = RESULTS_DIR,
    chart: bool = True,
) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [write_json(results, meta, directory / "latest.json")]
    paths.append(write_markdown(results, meta, directory / "latest.md"))
    if chart:
        paths.append(write_chart(results, directory / "latest.png"))
    return paths


def write_json(results: Sequence[ScenarioResult], meta: dict[str, Any], path: Path) -> Path:
    payload = {"meta": meta, "scenarios": [r.to_dict() for r in results]}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _met(result: ScenarioResult) -> str:
    if result.status != "ok":
        return result.status.upper()
    if result.target_met is None:
        return "–"
    return "met" if result.target_met else "NOT met"


def markdown_table(results: Sequence[ScenarioResult]) -> str:
    lines = [
        "| scenario | engine | baseline | ratio | peak RSS | target | check |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in results:
        engine = f"{_num(r.value)} {r.unit}" if r.value is not None else "–"
        if r.headline:
            engine = f"{engine}; {r.headline}"
        base = f"{_num(r.baseline_value)} {r.unit}" if r.baseline_value is not None else "–"
        if r.baseline:
            base = f"{base} ({r.baseline})"
        for label, value in r.other_values.items():
            ratio = r.other_ratios.get(label)
            base += f"; {label}: {_num(value)}" + (f" ({_ratio(ratio)})" if ratio else "")
        for label in r.skipped:
            base += f"; {label}: skipped"
        rss = f"{_num(r.peak_rss_mb)} MB" if r.peak_rss_mb is not None else "–"
        target = f"{r.target or '–'}: {_met(r)}"
        check = (r.check or "–") if r.status == "ok" else (r.error or "").splitlines()[0][:120]
        lines.append(
            f"| {r.title} | {engine} | {base} | {_ratio(r.ratio)} | {rss} | {target} | {check} |"
        )
    return "\n".join(lines)


def targets_table(results: Sequence[ScenarioResult]) -> str:
    """The issue's targets, each with the figure it is judged on and an honest verdict."""
    lines = ["| target | measured | met? |", "| --- | --- | --- |"]
    for r in results:
        if not r.target:
            continue
        if r.status != "ok":
            measured, verdict = f"{r.status}: {(r.error or '').splitlines()[0][:90]}", "no"
        else:
            ratio = f" ({_ratio(r.ratio)} {r.baseline})" if r.ratio is not None else ""
            measured = r.headline or f"{_num(r.value)} {r.unit}{ratio}"
            verdict = "yes" if r.target_met else "no"
        lines.append(f"| {r.title}: {r.target} | {measured} | {verdict} |")
    return "\n".join(lines)


def markdown(results: Sequence[ScenarioResult], meta: dict[str, Any]) -> str:
    head = (
        f"# Benchmark results ({meta.get('mode', '?')} run, {meta.get('finished', '?')})\n\n"
        f"Machine: {meta.get('machine', {}).get('cpus', '?')} CPUs, "
        f"Python {meta.get('machine', {}).get('python', '?')}; "
        f"load average before the run: {meta.get('machine', {}).get('load_average_1m', '?')}; "
        f"size factors {meta.get('scale') or 'none'}, repeat {meta.get('repeat') or 'default'}, "
        f"budget {meta.get('budget') or 'none'}; `syncengine --help` takes "
        f"{meta.get('cli_start_s', '?')} s (process start is inside every engine figure). "
        "Engine figures are medians of the runs; ratios are against baselines measured in the "
        "same run.\n\n"
    )
    details = []
    for r in results:
        extra = ", ".join(f"{k}={_fmt(v)}" for k, v in r.extra.items())
        if extra:
            details.append(f"- **{r.title}**: {extra}")
        for label, why in r.skipped.items():
            details.append(f"- **{r.title}**: {label} skipped: {why}")
        if r.status != "ok" and r.error:
            details.append(f"- **{r.title}** {r.status}:\n\n  ```\n  {_indent(r.error)}\n  ```")
    tail = ("\n\n## Details\n\n" + "\n".join(details)) if details else ""
    targets = "\n\n## Targets\n\n" + targets_table(results)
    return head + markdown_table(results) + targets + tail + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _indent(text: str) -> str:
    return text.replace("\n", "\n  ")


def write_markdown(results: Sequence[ScenarioResult], meta: dict[str, Any], path: Path) -> Path:
    path.write_text(markdown(results, meta))
    return path


def write_chart(results: Sequence[ScenarioResult], path: Path) -> Path:
    """Two panels: engine vs baseline throughput (log scale), and the ratio per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = list(results)
    names = [r.name if r.status == "ok" else f"{r.name} ({r.status.upper()})" for r in shown]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, max(3.0, 0.55 * len(shown) + 1.5)))
    ys = range(len(shown))
    left.barh([y + 0.2 for y in ys], [r.value or 0 for r in shown], 0.4, label="syncengine")
    left.barh([y - 0.2 for y in ys], [r.baseline_value or 0 for r in shown], 0.4, label="baseline")
    left.set_yticks(list(ys), names)
    left.set_xscale("log")
    left.set_xlabel("rows (or events) per second, median")
    left.legend(loc="lower right")
    left.invert_yaxis()
    ratios = [r.ratio or 0 for r in shown]
    colours = [
        "tab:green" if r.target_met else "tab:red" if r.target_met is False else "tab:gray"
        for r in shown
    ]
    right.barh(list(ys), ratios, 0.6, color=colours)
    right.set_yticks(list(ys), [""] * len(shown))
    right.axvline(1.0, color="black", linewidth=0.8)
    right.set_xlabel("ratio to same-run baseline (green: target met)")
    right.invert_yaxis()
    for y, result in zip(ys, shown, strict=True):
        label = f"{result.ratio:.2f}×" if result.ratio is not None else "–"
        right.annotate(label, (result.ratio or 0, y), xytext=(3, -3), textcoords="offset points")
    fig.suptitle("syncengine benchmarks")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
