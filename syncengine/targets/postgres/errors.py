"""Postgres errors → the engine's retry policy, and which errors belong to single records."""

from __future__ import annotations

import psycopg

from syncengine.config.secrets import redact
from syncengine.errors import (
    FatalError,
    RetriableError,
    SyncEngineError,
    TargetUnavailable,
    sqlstate_is_retriable,
)

# Classes whose errors come from the values of some rows; the batch is bisected to find them.
# 22 data exception (bad value, overflow), 23 integrity constraint violation, 54000 program
# limit exceeded (an index row too large).
_RECORD_STATES = ("22", "23", "54000")


def is_record_error(exc: psycopg.Error) -> bool:
    state = exc.sqlstate or ""
    return bool(state) and any(state.startswith(p) for p in _RECORD_STATES)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)


def translate(exc: psycopg.Error, doing: str) -> SyncEngineError:
    """The engine error for a driver error; the message never carries a password."""
    state = exc.sqlstate
    message = f"postgres target: {doing} failed: {first_line(exc)}"
    if state:
        message += f" [SQLSTATE {state}]"
    if not sqlstate_is_retriable(state):
        return FatalError(message)
    unreachable = state is None or state.startswith("08") or state.startswith("57P")
    return (TargetUnavailable if unreachable else RetriableError)(message)
