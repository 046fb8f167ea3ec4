"""psycopg errors → syncengine errors, by SQLSTATE through the engine's error table
(:func:`syncengine.errors.sqlstate_rule`, source side)."""

from __future__ import annotations

from syncengine.config.secrets import redact
from syncengine.errors import SyncEngineError, sqlstate_rule

#: "requested WAL segment … has already been removed" (undefined_file on a replication
#: connection); the text decides too, should the code be missing or another
_WAL_REMOVED = "58P01"
#: START_REPLICATION of a slot the server invalidated (``max_slot_wal_keep_size``), should it
#: happen between the stream's check of the slot and its start: the same loss
_INVALIDATED = "cannot read from logical replication slot"


def map_error(exc: BaseException, doing: str) -> SyncEngineError:
    """The syncengine error for a failure while ``doing`` something (message without secrets)."""
    if isinstance(exc, SyncEngineError):
        return exc
    sqlstate = getattr(exc, "sqlstate", None)
    text = redact((str(exc).strip().splitlines() or [type(exc).__name__])[0])
    if "has already been removed" in text or _INVALIDATED in text:
        sqlstate = _WAL_REMOVED
    return sqlstate_rule(sqlstate).error("source", f"postgres source: {doing}: {text}")
