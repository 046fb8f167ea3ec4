"""psycopg errors → syncengine errors, by SQLSTATE (one table: ``errors.SQLSTATE_CLASSES``)."""

from __future__ import annotations

import psycopg

from syncengine.config.secrets import redact
from syncengine.errors import (
    FatalError,
    HistoryLost,
    PermissionProblem,
    SourceUnavailable,
    SyncEngineError,
    sqlstate_is_retriable,
)

#: "requested WAL segment … has already been removed"
_WAL_REMOVED = "58P01"


def map_error(exc: BaseException, doing: str) -> SyncEngineError:
    """The syncengine error for a failure while ``doing`` something (message without secrets)."""
    if isinstance(exc, SyncEngineError):
        return exc
    sqlstate = getattr(exc, "sqlstate", None)
    text = redact((str(exc).strip().splitlines() or [type(exc).__name__])[0])
    message = f"postgres source: {doing}: {text}"
    if sqlstate == _WAL_REMOVED or "has already been removed" in text:
        return HistoryLost(
            message, hint="the slot's WAL is gone; reset the pipeline and backfill again"
        )
    if sqlstate == "42501":
        return PermissionProblem(message, hint="grant the privilege named above to the user")
    if isinstance(exc, psycopg.OperationalError | OSError) and sqlstate is None:
        return SourceUnavailable(message)
    if sqlstate_is_retriable(sqlstate):
        return SourceUnavailable(message)
    return FatalError(message)
