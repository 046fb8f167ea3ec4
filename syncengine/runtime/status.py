"""What ``status`` shows: stored per pipeline in the state store, gathered live on demand."""

from __future__ import annotations

from datetime import UTC, datetime

from syncengine.state.protocols import PipelineStatus


def record_status(
    state: PipelineStatus, pipeline: str, rows_applied: int | None, last_error: str | None
) -> None:
    """Add ``rows_applied`` to the pipeline's running total and remember the last error."""
    current = state.get_status(pipeline)
    current["rows_applied"] = int(current.get("rows_applied", 0)) + int(rows_applied or 0)
    current["last_error"] = last_error
    current["updated_at"] = datetime.now(UTC).isoformat()
    state.put_status(pipeline, current)
