"""What a ``--where`` of a Mongo source may be (``resnapshot``, ``backfill``): one filter
document, sent as a ``$match`` with the pipeline's own credentials, that runs no server-side
JavaScript (``$where``, ``$function``, ``$accumulator``).
"""

from __future__ import annotations

from typing import Any

from syncengine.errors import UsageError

#: Mongo operators that run JavaScript on the server
_JS = frozenset({"$where", "$function", "$accumulator"})


def check_where(where: str) -> None:
    """Raise :class:`UsageError` unless ``where`` is a filter that runs no JavaScript."""
    from syncengine.sources.mongo.snapshot import parse_where

    try:
        match = parse_where(where)
    except ValueError as exc:
        raise UsageError(f"--where: {exc}") from None
    found = _operators(match)
    if found & _JS:
        raise UsageError(f"--where: {', '.join(sorted(found & _JS))} runs JavaScript: refused")


def _operators(value: Any) -> set[str]:
    if isinstance(value, dict):
        keys = {k for k in value if isinstance(k, str) and k.startswith("$")}
        for item in value.values():
            keys |= _operators(item)
        return keys
    if isinstance(value, list):
        return set().union(*(_operators(v) for v in value)) if value else set()
    return set()
