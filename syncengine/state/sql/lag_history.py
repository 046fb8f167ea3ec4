"""The lag history in the state store: what the console's chart of the last hour reads.

The daemon adds one sample per pipeline (and one per source table that applied something)
every ``console.history_interval``, in one transaction that also drops what is older than
``console.history_keep``. The commit does not fsync (``_quiet_transaction``): a sample lost
with the machine costs a point on a chart, and a history write must not add a disk flush to
the daemon's work. The primary key (pipeline, at_ms, source_table) is the index both the
window read and the prune use.
"""

from __future__ import annotations

from collections.abc import Iterable

from syncengine.state.base import LagSample
from syncengine.state.sql.base import StateSQL


def _ms(at: float) -> int:
    return int(round(at * 1000))


class SQLLagHistory(StateSQL):
    def add_lag_samples(
        self, pipeline: str, samples: Iterable[LagSample], keep_seconds: float, now: float
    ) -> None:
        """Add ``samples`` and drop the pipeline's samples older than ``now - keep_seconds``."""
        rows = [
            (
                pipeline,
                _ms(s.at),
                s.table,
                s.lag_seconds,
                s.lag_bytes,
                s.retained_wal_bytes,
                int(s.applied),
            )
            for s in samples
        ]
        with self._quiet_transaction() as db:
            db.executemany(
                "INSERT INTO lag_history(pipeline, at_ms, source_table, lag_seconds, lag_bytes, "
                "retained_wal_bytes, applied) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(pipeline, at_ms, source_table) DO NOTHING",
                rows,
            )
            db.execute(
                "DELETE FROM lag_history WHERE pipeline=? AND at_ms < ?",
                (pipeline, _ms(now - keep_seconds)),
            )

    def lag_samples(self, pipeline: str, since: float, table: str | None = "") -> list[LagSample]:
        """Samples at or after ``since``, oldest first: the pipeline's own (``table`` ''),
        one table's, or every row (``table`` None)."""
        query = (
            "SELECT at_ms, source_table, lag_seconds, lag_bytes, retained_wal_bytes, applied "
            "FROM lag_history WHERE pipeline=? AND at_ms >= ?"
        )
        args: tuple[object, ...] = (pipeline, _ms(since))
        if table is not None:
            query += " AND source_table=?"
            args += (table,)
        rows = self.db.execute(query + " ORDER BY at_ms, source_table", args)
        return [LagSample(at / 1000, t, lag, lb, wal, int(n)) for at, t, lag, lb, wal, n in rows]
