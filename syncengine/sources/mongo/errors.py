"""PyMongo errors → syncengine errors, so the runtime knows whether to retry.

One table decides (:data:`syncengine.errors.MONGO_RETRIABLE_CODES`,
:data:`~syncengine.errors.MONGO_HISTORY_LOST_CODES`); the driver's own labels
(``ResumableChangeStreamError``, ``RetryableWriteError``) and connection failures count as
transient too. Messages never include the URI (it may hold a password).
"""

from __future__ import annotations

from pymongo.errors import (
    ConfigurationError,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
)

from syncengine.config.secrets import redact
from syncengine.errors import (
    MONGO_HISTORY_LOST_CODES,
    MONGO_RETRIABLE_CODES,
    ConfigError,
    FatalError,
    HistoryLost,
    PermissionProblem,
    SourceUnavailable,
    SyncEngineError,
)

_PERMISSION_CODES = frozenset({13, 18})  # Unauthorized, AuthenticationFailed
_LABELS = ("ResumableChangeStreamError", "RetryableWriteError", "RetryableError")


def map_error(exc: PyMongoError, what: str) -> SyncEngineError:
    """The syncengine error for ``exc`` raised while doing ``what`` (e.g. "reading shop")."""
    text = _first_line(exc)
    code = getattr(exc, "code", None)
    if isinstance(exc, OperationFailure) and code in MONGO_HISTORY_LOST_CODES:
        return HistoryLost(
            f"{what}: the change stream cannot resume from the checkpoint, the oplog no longer "
            f"holds it (code {code}: {text})",
            hint="on_history_lost: resnapshot copies the collections again; "
            "with 'fail', reset the checkpoint and run a backfill",
        )
    if isinstance(exc, OperationFailure) and code in _PERMISSION_CODES:
        return PermissionProblem(
            f"{what}: {text}",
            hint="the user needs the 'read' role on the database and 'changeStream' privileges",
        )
    if isinstance(exc, ConfigurationError):
        return ConfigError([f"source.uri: {text}"])
    if (
        isinstance(exc, ConnectionFailure)
        or code in MONGO_RETRIABLE_CODES
        or any(exc.has_error_label(label) for label in _LABELS)
    ):
        return SourceUnavailable(f"{what}: {text}")
    return FatalError(f"{what}: {text}" + (f" (code {code})" if code is not None else ""))


def _first_line(exc: BaseException) -> str:
    # Driver messages end with the full server reply / timeout config: keep the useful head.
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return redact(text.split(", full error:")[0].split(" (configured timeouts")[0])
