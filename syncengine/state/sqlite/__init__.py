"""The embedded state store: every state protocol (:mod:`syncengine.state.protocols`) over one
SQLite file, one module per concern sharing the connection of :mod:`.connection`."""

from __future__ import annotations

from syncengine.state.sqlite.checkpoints import SQLiteCheckpoints
from syncengine.state.sqlite.chunks import SQLiteChunks
from syncengine.state.sqlite.conflicts import SQLiteConflicts
from syncengine.state.sqlite.dead_letters import SQLiteDeadLetters
from syncengine.state.sqlite.forget import SQLiteForget
from syncengine.state.sqlite.lag_history import SQLiteLagHistory
from syncengine.state.sqlite.pauses import SQLitePauses
from syncengine.state.sqlite.shadow import SQLiteShadow
from syncengine.state.sqlite.status import SQLiteStatus
from syncengine.state.sqlite.table_requests import SQLiteTableRequests


class SQLiteStateStore(
    SQLiteCheckpoints,
    SQLiteChunks,
    SQLiteShadow,
    SQLiteConflicts,
    SQLiteDeadLetters,
    SQLiteStatus,
    SQLiteLagHistory,
    SQLitePauses,
    SQLiteTableRequests,
    SQLiteForget,
):
    """Checkpoints, chunk progress, shadow rows, conflicts, dead letters, status, lag history,
    paused tables, table requests (and removing one table's state) and locks in one file (see
    :mod:`syncengine.state.sqlite.connection` for why SQLite)."""


__all__ = ["SQLiteStateStore"]
