"""PyMongo errors → syncengine errors, so the runtime knows whether to retry.

The engine's error table decides (:func:`syncengine.errors.mongo_rule`, read through
:func:`syncengine.mongoclient.error_rule`): a lost connection, a transient server code or a
retry label is ``SourceUnavailable``, a code meaning the change stream cannot resume is
``HistoryLost``, codes 13 and 18 are ``PermissionProblem``. A bad URI is a ``ConfigError``.
Messages never include the URI (it may hold a password).
"""

from __future__ import annotations

from pymongo.errors import ConfigurationError, PyMongoError

from syncengine.config.secrets import redact
from syncengine.errors import ConfigError, FatalError, HistoryLost, SyncEngineError
from syncengine.mongoclient import error_rule


def map_error(exc: PyMongoError, what: str) -> SyncEngineError:
    """The syncengine error for ``exc`` raised while doing ``what`` (e.g. "reading shop")."""
    text = _first_line(exc)
    if isinstance(exc, ConfigurationError):
        return ConfigError([f"source.uri: {text}"])
    code = getattr(exc, "code", None)
    rule = error_rule(exc)
    kind = rule.on("source")
    if kind is HistoryLost:
        message = (
            f"{what}: the change stream cannot resume from the checkpoint, the oplog no longer "
            f"holds it (code {code}: {text})"
        )
    elif kind is FatalError and code is not None:
        message = f"{what}: {text} (code {code})"
    else:
        message = f"{what}: {text}"
    return rule.error("source", message)


def _first_line(exc: BaseException) -> str:
    # Driver messages end with the full server reply / timeout config: keep the useful head.
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return redact(text.split(", full error:")[0].split(" (configured timeouts")[0])
