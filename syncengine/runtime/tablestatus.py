"""``status --tables``: one row per source table, from the state store alone (no connection).

A table's state: ``paused`` / ``resuming`` (a pause request holds its changes),
``snapshotting`` (its snapshot chunks are not all done: ``chunks_done`` of ``chunks_total``),
``streaming``, or ``removed`` (the state store has state for it but the config no longer reads
it). Dead letters are counted per source table, pending conflicts per target table and added to
the source table its mapping reads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from syncengine.config.models import PipelineConfig
from syncengine.state.protocols import StateStore


def table_status(name: str, config: PipelineConfig, state: StateStore) -> list[dict[str, Any]]:
    key = config.source_key
    configured = [key(t) for t in config.source.table_names()]
    targets: dict[str, list[str]] = {}
    for mapping in config.mappings_for_sources():
        targets.setdefault(key(mapping.source), []).append(mapping.target_name)
    chunks = state.get_chunks(name)
    stats = state.table_stats(name)
    pauses = state.pauses(name)
    held = state.held_totals(name)
    counts = state.table_counts(name)
    known = {c.table for c in chunks} | set(stats) | set(pauses) | set(held)
    known |= set(counts["dead_letters"])
    removed = sorted(known - set(configured))
    now = datetime.now(UTC)
    rows = []
    for table in [*configured, *removed]:
        own = [c for c in chunks if c.table == table]
        done = sum(c.status == "done" for c in own)
        pause = pauses.get(table)
        stat = stats.get(table)
        if table in removed:
            state_name = "removed"
        elif pause is not None:
            state_name = "resuming" if pause.status == "resuming" else "paused"
        elif own and done < len(own):
            state_name = "snapshotting"
        else:
            state_name = "streaming"
        lag = stat.last_lag_seconds if stat else None
        if pause is not None and pause.paused_at:
            lag = (now - datetime.fromisoformat(pause.paused_at)).total_seconds()
        rows.append(
            {
                "pipeline": name,
                "table": table,
                "state": state_name,
                "chunks_done": done if own else None,
                "chunks_total": len(own) if own else None,
                "rows_applied": stat.rows_applied if stat else 0,
                "last_change_at": stat.last_change_at if stat else None,
                "lag_seconds": lag,
                "held_changes": pause.held_rows if pause else 0,
                "held_bytes": held.get(table, (0, 0))[1],
                "dead_letters": counts["dead_letters"].get(table, 0),
                "pending_conflicts": sum(
                    counts["pending_conflicts"].get(t, 0) for t in targets.get(table, [])
                ),
            }
        )
    return rows
