"""Every concern's queries joined: what a store adds its connection to."""

from __future__ import annotations

from syncengine.state.sql.checkpoints import SQLCheckpoints
from syncengine.state.sql.chunks import SQLChunks
from syncengine.state.sql.conflicts import SQLConflicts
from syncengine.state.sql.dead_letters import SQLDeadLetters
from syncengine.state.sql.forget import SQLForget
from syncengine.state.sql.lag_history import SQLLagHistory
from syncengine.state.sql.pauses import SQLPauses
from syncengine.state.sql.shadow import SQLShadow
from syncengine.state.sql.status import SQLStatus
from syncengine.state.sql.table_requests import SQLTableRequests


class StateQueries(
    SQLCheckpoints,
    SQLChunks,
    SQLShadow,
    SQLConflicts,
    SQLDeadLetters,
    SQLStatus,
    SQLLagHistory,
    SQLPauses,
    SQLTableRequests,
    SQLForget,
):
    """Checkpoints, chunk progress, shadow rows, conflicts, dead letters, status, lag history,
    paused tables, table requests and removing one table's state."""
