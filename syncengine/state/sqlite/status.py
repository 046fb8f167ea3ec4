"""Pipeline status in the SQLite store: what ``status`` shows without connecting anywhere.

The stored part (running total of rows applied, last error) is one JSON value per pipeline in
``meta`` under ``status:<pipeline>``; the open work is counted from the conflict and dead-letter
tables.
"""

from __future__ import annotations

import json
from typing import Any

from syncengine.state.sqlite.connection import SQLiteConnection


class SQLiteStatus(SQLiteConnection):
    def get_status(self, pipeline: str) -> dict[str, Any]:
        row = self.db.execute(
            "SELECT value FROM meta WHERE name=?", (f"status:{pipeline}",)
        ).fetchone()
        status: dict[str, Any] = json.loads(row[0]) if row else {}
        return status

    def put_status(self, pipeline: str, status: dict[str, Any]) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO meta(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET "
                "value=excluded.value",
                (f"status:{pipeline}", json.dumps(status)),
            )

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
