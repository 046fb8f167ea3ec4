"""The engine's per-phase seconds, read from its ``backfill phases: …`` or (``sync --once``)
``stream phases: …`` log line."""

from __future__ import annotations

import re

LINE = re.compile(r"(?:backfill|stream) phases: (.*)$", re.MULTILINE)
PHASE = re.compile(r"([a-z_]+) ([\d.]+) s")


def phase_seconds(stderr: str) -> dict[str, float]:
    """``{"read": 1.2, "map": 0.3, …}`` from the last such line; empty when there is none
    (an engine without the line: the figure is then simply not reported)."""
    found = LINE.findall(stderr)
    if not found:
        return {}
    return {phase: round(float(s), 2) for phase, s in PHASE.findall(found[-1])}
