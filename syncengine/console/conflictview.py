"""One conflict as the Conflicts page shows it: base, local and remote side by side.

Fields are rows, the three versions columns; a nested document (or a JSON value holding an
object) opens into indented child rows, a tree, so a difference deep inside is marked on its
own field. A cell differs when its value is not the base's. Everything here is text for the
template, which escapes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

ABSENT = object()
"""A field a version does not have (or a version with no row at all)."""


@dataclass(frozen=True)
class FieldRow:
    path: str
    name: str
    depth: int
    base: str
    local: str
    remote: str
    local_differs: bool
    remote_differs: bool
    branch: bool
    """A nested document: its fields follow as deeper rows."""


def _nested(value: Any) -> Any:
    """A JSON text holding an object or array is shown as the tree it is."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            parsed = json.loads(value)
        except ValueError:
            return value
        return parsed if isinstance(parsed, dict) else value
    return value


def _text(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)


def _same(a: Any, b: Any) -> bool:
    if a is ABSENT or b is ABSENT:
        return a is b
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def field_rows(base: Any, local: Any, remote: Any) -> list[FieldRow]:
    """Rows for three versions of a row (``None``: that version has no row)."""
    sides = [ABSENT if v is None else v for v in (base, local, remote)]
    rows: list[FieldRow] = []
    _walk(sides, "", 0, rows)
    return rows


def _walk(sides: list[Any], prefix: str, depth: int, rows: list[FieldRow]) -> None:
    names: list[str] = []
    for side in sides:
        if isinstance(side, dict):
            names.extend(k for k in side if k not in names)
    for name in names:
        values = [
            _nested(side.get(name, ABSENT)) if isinstance(side, dict) else ABSENT for side in sides
        ]
        path = f"{prefix}.{name}" if prefix else name
        branch = any(isinstance(v, dict) for v in values)
        base, local, remote = values
        rows.append(
            FieldRow(
                path=path,
                name=name,
                depth=depth,
                base="" if branch and isinstance(base, dict) else _text(base),
                local="" if branch and isinstance(local, dict) else _text(local),
                remote="" if branch and isinstance(remote, dict) else _text(remote),
                local_differs=not _same(local, base),
                remote_differs=not _same(remote, base),
                branch=branch,
            )
        )
        if branch:
            _walk(values, path, depth + 1, rows)


def pretty(text: str | None) -> str:
    """A stored JSON row or change as indented JSON (or the text as it is); for reading
    only, never for a row sent back (a JSON column stays text there)."""
    if text is None:
        return "(none)"
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, dict):  # a JSON column shown as the object it holds
        value = {k: _nested(v) for k, v in value.items()}
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
