"""Removing one table's state from the state store (``syncengine checkpoints CONFIG remove``).

A table removed from a pipeline's config keeps its state until a person removes it: the chunk
progress of its backfill and of its single-table snapshots, its counters, its requests, its
pause and the changes the pause held, its dead letters, its lag samples, and per target table
its shadow rows and conflicts (with the changes held behind them). All of it goes in one
transaction, so a crash leaves either all of it or none. The audit of past conflict decisions
is history, not state, and stays.
"""

from __future__ import annotations

from collections.abc import Sequence

from syncengine.state.base import table_chunks
from syncengine.state.sql.base import StateSQL

#: what goes per source table: (kind, statement over (pipeline, table-snapshot namespace, table))
_PER_SOURCE = (
    ("chunks", "DELETE FROM chunks WHERE pipeline IN (?, ?) AND source_table=?"),
    ("table_stats", "DELETE FROM table_stats WHERE pipeline IN (?, ?) AND source_table=?"),
    ("paused_tables", "DELETE FROM paused_tables WHERE pipeline IN (?, ?) AND source_table=?"),
    ("dead_letters", "DELETE FROM dead_letters WHERE pipeline IN (?, ?) AND source_table=?"),
    # the console's per-table lag samples (the pipeline-wide ones have source_table '')
    ("lag_history", "DELETE FROM lag_history WHERE pipeline IN (?, ?) AND source_table=?"),
    # changes held by the table's pause (conflict id 0, PAUSE_HOLD) name the source table
    (
        "held_changes",
        "DELETE FROM held_changes WHERE pipeline IN (?, ?) AND target_table=? AND conflict_id=0",
    ),
)
#: what goes per target table the mapping wrote: statements over (pipeline, target table)
_PER_TARGET = (
    ("shadow", "DELETE FROM shadow WHERE pipeline=? AND target_table=?"),
    (
        "held_changes",
        "DELETE FROM held_changes WHERE pipeline=? AND target_table=? AND conflict_id<>0",
    ),
    ("conflicts", "DELETE FROM conflicts WHERE pipeline=? AND target_table=?"),
)


class SQLForget(StateSQL):
    def forget_table(
        self, pipeline: str, table: str, targets: Sequence[str], keep_request: int | None = None
    ) -> dict[str, int]:
        """Delete ``table``'s state (``targets``: the target tables its mapping wrote);
        ``keep_request``: the id of the request asking for this (left for its caller to read).
        Returns how many rows went, per kind."""
        gone: dict[str, int] = {}
        with self.transaction() as db:
            for kind, statement in _PER_SOURCE:
                args = (pipeline, table_chunks(pipeline), table)
                gone[kind] = gone.get(kind, 0) + db.execute(statement, args).rowcount
            for target in targets:
                for kind, statement in _PER_TARGET:
                    gone[kind] = (
                        gone.get(kind, 0) + db.execute(statement, (pipeline, target)).rowcount
                    )
            gone["table_requests"] = db.execute(
                "DELETE FROM table_requests WHERE pipeline=? AND source_table=? "
                "AND id IS DISTINCT FROM ?",
                (pipeline, table, keep_request),
            ).rowcount
        return gone
