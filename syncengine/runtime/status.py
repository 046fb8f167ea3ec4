"""What ``status`` shows: stored per pipeline in the state store, gathered live on demand."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from syncengine.state import SQLiteStateStore


def record_status(
    state: SQLiteStateStore, pipeline: str, rows_applied: int | None, last_error: str | None
) -> None:
    """Add ``rows_applied`` to the pipeline's running total and remember the last error."""
    current = read_status(state, pipeline)
    current["rows_applied"] = int(current.get("rows_applied", 0)) + int(rows_applied or 0)
    current["last_error"] = last_error
    current["updated_at"] = datetime.now(UTC).isoformat()
    with state.transaction() as db:
        db.execute(
            "INSERT INTO meta(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET "
            "value=excluded.value",
            (f"status:{pipeline}", json.dumps(current)),
        )


def read_status(state: SQLiteStateStore, pipeline: str) -> dict[str, Any]:
    row = state.db.execute(
        "SELECT value FROM meta WHERE name=?", (f"status:{pipeline}",)
    ).fetchone()
    return json.loads(row[0]) if row else {}
