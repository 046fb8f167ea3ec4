"""Durations as people write them in YAML and on the command line: ``500ms``, ``2s``, ``5m``."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_duration(value: object) -> float:
    """Seconds in ``value`` (as YAML or a command line gives it); a bare number is seconds.
    Raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 500ms, 2s, 5m, 1h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    match = _PATTERN.match(str(value))
    if not match:
        raise ValueError(f"'{value}' is not a duration; write e.g. 500ms, 2s, 5m, 1h")
    number, unit = match.groups()
    return float(number) * _UNITS[unit or "s"]
