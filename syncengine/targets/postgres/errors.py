"""Postgres errors → the engine's retry policy, and which errors belong to single records.

Both come from the engine's error table (:func:`syncengine.errors.sqlstate_rule`, target
side): the SQLSTATE classes of bad row values (22, 23, 54000) are ``RecordError`` there, and
a batch failing with one is bisected to find its rows.
"""

from __future__ import annotations

import psycopg

from syncengine.config.secrets import redact
from syncengine.errors import RecordError, SyncEngineError, sqlstate_rule


def is_record_error(exc: psycopg.Error) -> bool:
    """Whether the error comes from the values of some rows (not from the statement)."""
    return issubclass(sqlstate_rule(exc.sqlstate).target, RecordError) if exc.sqlstate else False


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return redact(text.splitlines()[0] if text else type(exc).__name__)


def translate(exc: psycopg.Error, doing: str) -> SyncEngineError:
    """The engine error for a driver error; the message never carries a password."""
    state = exc.sqlstate
    message = f"postgres target: {doing} failed: {first_line(exc)}"
    if state:
        message += f" [SQLSTATE {state}]"
    return sqlstate_rule(state).error("target", message)
