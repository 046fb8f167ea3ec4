"""Which failures are worth retrying: the one place driver exceptions meet the retry policy."""

from __future__ import annotations

import psycopg
from pymongo import errors as mongo_errors

from syncengine.errors import (
    MONGO_RETRIABLE_CODES,
    SyncEngineError,
    sqlstate_is_retriable,
)


def is_transient(exc: BaseException) -> bool:
    """True when reconnecting and resuming from the checkpoint may succeed."""
    if isinstance(exc, SyncEngineError):
        return exc.retriable
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    if isinstance(exc, psycopg.Error):
        return sqlstate_is_retriable(exc.sqlstate)
    if isinstance(exc, mongo_errors.ConnectionFailure | mongo_errors.ServerSelectionTimeoutError):
        return True
    if isinstance(exc, mongo_errors.PyMongoError):
        code = getattr(exc, "code", None)
        labels = getattr(exc, "has_error_label", None)
        if labels and (labels("RetryableWriteError") or labels("TransientTransactionError")):
            return True
        return code in MONGO_RETRIABLE_CODES
    if isinstance(exc, ConnectionError | TimeoutError | EOFError):
        return True
    return isinstance(exc, OSError) and exc.errno is not None
