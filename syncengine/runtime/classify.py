"""Which failures are worth retrying: the one place driver exceptions meet the retry policy.

Sources and targets translate their driver errors through the error table
(:mod:`syncengine.errors`) with their side; an error that escaped untranslated is retried
when the table says so for either side.
"""

from __future__ import annotations

import psycopg
from pymongo.errors import PyMongoError

from syncengine.errors import SyncEngineError, sqlstate_rule
from syncengine.mongoclient import error_rule


def is_transient(exc: BaseException) -> bool:
    """True when reconnecting and resuming from the checkpoint may succeed."""
    if isinstance(exc, SyncEngineError):
        return exc.retriable
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return True
    if isinstance(exc, psycopg.Error):
        return sqlstate_rule(exc.sqlstate).retriable_anywhere()
    if isinstance(exc, PyMongoError):
        return error_rule(exc).retriable_anywhere()
    if isinstance(exc, ConnectionError | TimeoutError | EOFError):
        return True
    return isinstance(exc, OSError) and exc.errno is not None
