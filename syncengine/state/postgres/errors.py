"""Driver errors of the shared state store as the engine's errors, without the password."""

from __future__ import annotations

import psycopg

from syncengine.config.secrets import redact
from syncengine.errors import FatalError, StateUnavailable, SyncEngineError, sqlstate_rule


def translated(exc: psycopg.Error, doing: str) -> SyncEngineError:
    """:class:`StateUnavailable` (retried) for a lost or refused connection and a transient
    server error, :class:`FatalError` for the rest; the first line of the driver's message,
    redacted."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    message = f"state store: {doing} failed: {redact(first)}"
    if exc.sqlstate:
        message += f" [SQLSTATE {exc.sqlstate}]"
    # a client-side error has no SQLSTATE: only a lost or refused connection is worth a retry
    lost = isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    if lost or (exc.sqlstate and sqlstate_rule(exc.sqlstate).retriable_anywhere()):
        return StateUnavailable(message)
    return FatalError(message, hint="check the state: URL and the user's privileges there")
