"""Scenario registry and the result record every scenario produces.

A scenario is a function of a :class:`Context`; it returns a :class:`ScenarioResult` or raises.
The suite turns any exception into a ``failed`` result with a readable message and moves on, so
one broken engine path never hides the numbers of the others.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmarks.env import BenchEnv


class BenchmarkError(Exception):
    """A scenario could not produce a trustworthy figure; the message says why."""


class CheckFailed(BenchmarkError):
    """The target does not match the source: a fast-but-wrong run."""


@dataclass
class Context:
    quick: bool
    repeat: int | None
    """``--repeat N``; None: each scenario's default (more in full runs, 1 in quick runs)."""
    env: BenchEnv
    scale: float = 1.0
    """``--scale F``: every size × F (e.g. 0.1 for a full run at a tenth of the issue's sizes)."""

    def repeats(self, full_default: int) -> int:
        if self.repeat is not None:
            return self.repeat
        return 1 if self.quick else full_default

    def size(self, quick: int, full: int) -> int:
        return max(1, round((quick if self.quick else full) * self.scale))


@dataclass
class ScenarioResult:
    name: str
    title: str
    status: str = "ok"
    """ok | failed | missing"""
    unit: str = "rows/s"
    value: float | None = None
    """Median of ``runs`` (engine)."""
    runs: list[float] = field(default_factory=list)
    baseline: str | None = None
    baseline_value: float | None = None
    baseline_runs: list[float] = field(default_factory=list)
    ratio: float | None = None
    """value / baseline_value, both measured in this run."""
    others: dict[str, list[float]] = field(default_factory=dict)
    """Further same-run baselines (label → runs, in ``unit``); :meth:`finish` puts each median
    into ``other_values`` and the engine's ratio to it into ``other_ratios``."""
    other_values: dict[str, float] = field(default_factory=dict)
    other_ratios: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    """Baselines that could not run here (label → why), reported instead of a figure."""
    peak_rss_mb: float | None = None
    """Largest peak RSS of the syncengine process over the runs."""
    rows: int | None = None
    check: str | None = None
    target: str | None = None
    target_met: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    headline: str | None = None
    """The figure a target is about when it is not the rate (latency, memory), for the table."""
    error: str | None = None
    seconds: float = 0.0

    def finish(self) -> ScenarioResult:
        """Fill median and ratio from the recorded runs."""
        if self.runs:
            self.value = median(self.runs)
        if self.baseline_runs:
            self.baseline_value = median(self.baseline_runs)
        if self.value is not None and self.baseline_value:
            self.ratio = self.value / self.baseline_value
        for label, runs in self.others.items():
            if runs:
                self.other_values[label] = median(runs)
                if self.value is not None:
                    self.other_ratios[label] = round(self.value / self.other_values[label], 3)
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    run: Callable[[Context], ScenarioResult]
    in_quick: bool = True
    weight: float = 1.0
    """Share of a time budget relative to the other scenarios (setup-heavy ones need more)."""
    target: str | None = None
    """The issue's target, listed even when the scenario fails."""
    mongo: bool = False
    """Needs the MongoDB-compatible server (started before the clock of the first scenario)."""
    slow: bool = False
    """Too long for a routine full run (the 10M-row linearity check): runs only with
    ``--runslow`` or when ``--only`` names it."""


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def select(
    scenarios: Sequence[Scenario],
    quick: bool,
    only: Sequence[str] | None,
    runslow: bool = False,
) -> list[Scenario]:
    """The scenarios to run: ``--only`` names (any mode) or everything the mode includes
    (slow ones only with ``runslow``)."""
    if only:
        known = {s.name for s in scenarios}
        unknown = [n for n in only if n not in known]
        if unknown:
            raise BenchmarkError(
                f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return [s for s in scenarios if s.name in only]
    return [s for s in scenarios if (s.in_quick or not quick) and (runslow or not s.slow)]
