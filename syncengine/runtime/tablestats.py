"""Per source table counters of one applied group, for ``status --tables`` and the metrics.

Counted per group, vectorized (one Arrow ``max`` per batch, never per row), and written to the
state store in one transaction per group after the target committed it. A crash between that
commit and this write leaves the counters one group short (they are informational; the data
and its checkpoint are not affected).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pyarrow.compute as pc

from syncengine.changes import ChangeBatch

Stats = dict[str, tuple[int, str | None, float | None]]


def group_stats(
    batches: Sequence[ChangeBatch], applied: Mapping[str, int], sources: Mapping[str, str]
) -> Stats:
    """(rows applied, commit time of the newest change, its delay until now) per source table;
    ``applied`` counts per target table, ``sources`` names each target table's source."""
    rows: dict[str, int] = {}
    for target, n in applied.items():
        source = sources.get(target, target)
        rows[source] = rows.get(source, 0) + n
    newest: dict[str, datetime] = {}
    for batch in batches:
        if not batch.num_rows or "_ts" not in batch.data.column_names:
            continue
        value = pc.max(batch.data.column("_ts")).as_py()
        if value is not None and (batch.table not in newest or value > newest[batch.table]):
            newest[batch.table] = value
    now = datetime.now(UTC)
    stats: Stats = {}
    for table in rows.keys() | newest.keys():
        ts = newest.get(table)
        lag = max((now - ts).total_seconds(), 0.0) if ts is not None else None
        stats[table] = (rows.get(table, 0), ts.isoformat() if ts is not None else None, lag)
    return stats
