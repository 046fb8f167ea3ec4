"""What ``status`` shows: stored per pipeline in the state store, gathered live on demand."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from syncengine.runtime import resync
from syncengine.state.protocols import PipelineStatus, StateStore

if TYPE_CHECKING:
    from syncengine.config.models import Config


def record_status(
    state: PipelineStatus, pipeline: str, rows_applied: int | None, last_error: str | None
) -> None:
    """Add ``rows_applied`` to the pipeline's running total and remember the last error."""
    current = state.get_status(pipeline)
    current["rows_applied"] = int(current.get("rows_applied", 0)) + int(rows_applied or 0)
    current["last_error"] = last_error
    current["updated_at"] = datetime.now(UTC).isoformat()
    state.put_status(pipeline, current)


async def gather_status(config: Config, name: str, state: StateStore) -> dict[str, Any]:
    """What ``status`` shows for one pipeline: the stored totals and counts, the lag trend
    of the last hour the daemon recorded, and, connecting to source and target, the
    checkpoint, lag and retained WAL (an unreachable side is shown, redacted, instead of
    raised). The CLI and the console's standalone sampler call this."""
    from syncengine.config.secrets import redact
    from syncengine.config.twoway import direction_of
    from syncengine.runtime.laghistory import trend
    from syncengine.runtime.pipeline import Pipeline

    pipeline = Pipeline(name, config.pipelines[name], state)
    info: dict[str, Any] = {"pipeline": name, "stream": None, "checkpoint": None}
    direction = direction_of(config, name)
    if direction:  # one direction of a two-way pipeline
        info["direction"] = direction
    stored = state.get_status(name)
    info.update(
        rows_applied=stored.get("rows_applied", 0),
        last_error=stored.get("last_error"),
        **state.counts(name),
        lag_last_hour=trend(state.lag_samples(name, time.time() - 3600)),
    )
    try:
        await pipeline.open()
        info["stream"] = pipeline.stream_name
        info["checkpoint"] = await pipeline.checkpoint()
        lag = await pipeline.source.lag(info["checkpoint"])
        info.update(
            lag_bytes=lag.lag_bytes,
            lag_seconds=lag.lag_seconds,
            retained_wal_bytes=lag.retained_wal_bytes,
            source_position=lag.position,
            warning=lag.details.get("warning"),
        )
    except Exception as exc:  # noqa: BLE001 - status shows what it can
        info["reachable"] = False
        info["error"] = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    finally:
        await pipeline.close()
    resyncing = resync.describe(state, name)
    if resyncing is not None:  # a resync under way (runtime/resync.py)
        info["resync"] = resyncing
    chunks = state.get_chunks(name)
    if chunks:
        info["snapshot_chunks"] = {
            "done": sum(c.status == "done" for c in chunks),
            "total": len(chunks),
        }
    return info
