"""Pipeline status in the state store: what ``status`` shows without connecting anywhere.

The stored part (running total of rows applied, last error) is one JSON value per pipeline in
``meta`` under ``status:<pipeline>``; a cluster stream attempt's beat (who applies the
pipeline now, and when it last said so) another, under ``applier:<pipeline>``; the open work
is counted from the conflict and dead-letter tables.
Per source table, ``table_stats`` keeps rows applied, the commit time of the last change applied
and how late it was applied, added for every applied group in one transaction that does not
fsync: the counters are informational (a crash right after a group may leave them one group
short anyway), and a flush per group held the event loop, and with it a backfill's COPY pumps,
for milliseconds per chunk.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from syncengine.state.base import TableStats
from syncengine.state.sql.base import StateSQL, now


class SQLStatus(StateSQL):
    def get_status(self, pipeline: str) -> dict[str, Any]:
        status: dict[str, Any] = self._meta(f"status:{pipeline}") or {}
        return status

    def put_status(self, pipeline: str, status: dict[str, Any]) -> None:
        self._put_meta(f"status:{pipeline}", status)

    def beat_applier(self, pipeline: str, holder: str, at: float) -> None:
        with self._quiet_transaction() as db:
            db.execute(
                "INSERT INTO meta(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET "
                "value=excluded.value",
                (f"applier:{pipeline}", json.dumps({"holder": holder, "at": at})),
            )

    def applier(self, pipeline: str) -> tuple[str, float] | None:
        beat = self._meta(f"applier:{pipeline}")
        return None if beat is None else (str(beat["holder"]), float(beat["at"]))

    def end_applier(self, pipeline: str, holder: str) -> None:
        name = f"applier:{pipeline}"
        with self.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
            if row is not None and json.loads(row[0]).get("holder") == holder:
                db.execute("DELETE FROM meta WHERE name=?", (name,))

    def counts(self, pipeline: str) -> dict[str, int]:
        """Pending conflicts and unreplayed dead letters, for status and metrics."""
        conflicts = self.db.execute(
            "SELECT COUNT(*) FROM conflicts WHERE pipeline=? AND status='pending'", (pipeline,)
        ).fetchone()[0]
        letters = self.db.execute(
            "SELECT COUNT(*) FROM dead_letters WHERE pipeline=? AND replayed_at IS NULL",
            (pipeline,),
        ).fetchone()[0]
        return {"pending_conflicts": int(conflicts), "dead_letters": int(letters)}

    def add_table_stats(
        self, pipeline: str, groups: Mapping[str, tuple[int, str | None, float | None]]
    ) -> None:
        """Add one applied group: per source table (rows applied, commit time of its last
        change, seconds between that commit and the apply), all tables in one transaction."""
        if not groups:
            return
        stamp = now()
        with self._quiet_transaction() as db:
            db.executemany(
                "INSERT INTO table_stats(pipeline, source_table, rows_applied, last_change_at, "
                "last_lag_seconds, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(pipeline, source_table) DO UPDATE SET "
                "rows_applied=table_stats.rows_applied+excluded.rows_applied, "
                "last_change_at=CASE WHEN table_stats.last_change_at IS NULL OR "
                "excluded.last_change_at > table_stats.last_change_at "
                "THEN excluded.last_change_at ELSE table_stats.last_change_at END, "
                "last_lag_seconds=COALESCE(excluded.last_lag_seconds, "
                "table_stats.last_lag_seconds), "
                "updated_at=excluded.updated_at",
                [(pipeline, t, n, ts, lag, stamp) for t, (n, ts, lag) in groups.items()],
            )

    def table_stats(self, pipeline: str) -> dict[str, TableStats]:
        rows = self.db.execute(
            "SELECT source_table, rows_applied, last_change_at, last_lag_seconds, updated_at "
            "FROM table_stats WHERE pipeline=?",
            (pipeline,),
        )
        return {r[0]: TableStats(*r) for r in rows}

    def table_counts(self, pipeline: str) -> dict[str, dict[str, int]]:
        """Unreplayed dead letters per source table, pending conflicts per target table."""
        letters = self.db.execute(
            "SELECT source_table, COUNT(*) FROM dead_letters WHERE pipeline=? AND "
            "replayed_at IS NULL GROUP BY 1",
            (pipeline,),
        )
        conflicts = self.db.execute(
            "SELECT target_table, COUNT(*) FROM conflicts WHERE pipeline=? AND status='pending' "
            "GROUP BY 1",
            (pipeline,),
        )
        return {
            "dead_letters": {r[0]: int(r[1]) for r in letters},
            "pending_conflicts": {r[0]: int(r[1]) for r in conflicts},
        }
