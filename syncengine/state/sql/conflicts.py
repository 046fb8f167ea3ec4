"""The conflict queue in the state store: parked conflicts, held changes, audit rows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from syncengine.state.base import Conflict
from syncengine.state.sql.base import StateSQL, StateTransaction, now


class SQLConflicts(StateSQL):
    def park_conflict(self, db: StateTransaction, conflict: Conflict) -> int:
        cur = db.execute(
            "INSERT INTO conflicts(id, pipeline, target_table, row_key, base, local, remote, "
            "delta, status, created_at) VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM "
            "conflicts), ?, ?, ?, ?, ?, ?, ?, 'pending', ?) RETURNING id",
            (
                conflict.pipeline,
                conflict.table,
                conflict.key,
                conflict.base,
                conflict.local,
                conflict.remote,
                conflict.delta,
                now(),
            ),
        )
        return int(cur.fetchone()[0])

    def list_conflicts(
        self, pipeline: str | None = None, status: str | None = "pending"
    ) -> list[Conflict]:
        sql = (
            "SELECT id, pipeline, target_table, row_key, base, local, remote, delta, status, "
            "created_at, resolved_at, resolution, decided_by FROM conflicts WHERE 1=1"
        )
        args: list[Any] = []
        if pipeline:
            sql += " AND pipeline=?"
            args.append(pipeline)
        if status:
            sql += " AND status=?"
            args.append(status)
        return [Conflict(*row) for row in self.db.execute(sql + " ORDER BY id", args)]

    def get_conflict(self, conflict_id: int) -> Conflict | None:
        rows = self.db.execute(
            "SELECT id, pipeline, target_table, row_key, base, local, remote, delta, status, "
            "created_at, resolved_at, resolution, decided_by FROM conflicts WHERE id=?",
            (conflict_id,),
        ).fetchall()
        return Conflict(*rows[0]) if rows else None

    def pending_conflict_keys(self, pipeline: str, table: str) -> dict[str, int]:
        """row_key -> conflict id for keys whose changes must wait."""
        rows = self.db.execute(
            "SELECT row_key, id FROM conflicts WHERE pipeline=? AND target_table=? AND "
            "status='pending'",
            (pipeline, table),
        )
        return dict(rows.fetchall())

    def hold_changes(
        self,
        db: StateTransaction,
        pipeline: str,
        table: str,
        held: Iterable[tuple[int, str, str]],
    ) -> None:
        """(conflict_id, row_key, change JSON) rows that wait behind a pending conflict. The
        JSON is stored as UTF-8 bytes: the column also holds a paused table's Arrow batches
        (:mod:`.pauses`), so it is bytes in every store (``bytea`` in Postgres)."""
        for conflict_id, key, change in held:
            db.execute(
                "INSERT INTO held_changes(id, conflict_id, pipeline, target_table, row_key, "
                "change) VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM held_changes), ?, ?, ?, "
                "?, ?)",
                (conflict_id, pipeline, table, key, change.encode()),
            )

    def held_changes(self, conflict_id: int, pipeline: str | None = None) -> list[str]:
        """The changes held behind a conflict, in order; ``pipeline``: only that one's (a
        two-way ``manual`` conflict holds both directions' changes)."""
        if pipeline is None:
            rows = self.db.execute(
                "SELECT change FROM held_changes WHERE conflict_id=? ORDER BY id", (conflict_id,)
            )
        else:
            rows = self.db.execute(
                "SELECT change FROM held_changes WHERE conflict_id=? AND pipeline=? ORDER BY id",
                (conflict_id, pipeline),
            )
        return [_text(r[0]) for r in rows]

    def mark_resolved(
        self, db: StateTransaction, conflict_id: int, resolution: str, decided_by: str
    ) -> None:
        db.execute(
            "UPDATE conflicts SET status='resolved', resolved_at=?, resolution=?, decided_by=? "
            "WHERE id=?",
            (now(), resolution, decided_by, conflict_id),
        )
        db.execute("DELETE FROM held_changes WHERE conflict_id=?", (conflict_id,))

    def write_audit(
        self,
        db: StateTransaction,
        pipeline: str,
        table: str,
        rows: Iterable[tuple[str, str, str, str]],
    ) -> None:
        """(row_key, strategy, outcome, decided_by) rows."""
        for key, strategy, outcome, decided_by in rows:
            db.execute(
                "INSERT INTO audit(id, pipeline, target_table, row_key, strategy, outcome, "
                "decided_by, created_at) VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM audit), "
                "?, ?, ?, ?, ?, ?, ?)",
                (pipeline, table, key, strategy, outcome, decided_by, now()),
            )


def _text(change: str | bytes) -> str:
    """A held change's JSON (a store written before changes were kept as bytes has text)."""
    return change if isinstance(change, str) else bytes(change).decode()
