"""A MongoDB ``_id`` as a Python dict key that matches the way the server matches ``_id``s.

Shared by the Mongo target's read-back (which document a group read) and the Mongo source's
echo detection (which document an engine transaction touched): both compare ids that crossed
BSON in between, and must not import each other's drivers-side modules to do it."""

from __future__ import annotations

from typing import Any


def same_id(value: Any) -> Any:
    """``value`` as a dict key: integers of any BSON width alike (a key written as Int64 may
    come back as an int32, and MongoDB matches them as equal), everything else by its repr
    (a bool is not the integer 1)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    return repr(value)
