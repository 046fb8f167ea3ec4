"""Paused tables in the state store: the pause requests and the changes held meanwhile.

A paused table's changes are kept in ``held_changes``, the table that already keeps changes
held behind a pending manual conflict, under conflict id :data:`PAUSE_HOLD` (no conflict has
it: conflict ids start at 1). One row per run of held source batches: ``row_key`` is the
position of its last change, ``change`` the batches in Arrow IPC form (a BLOB; SQLite keeps
bytes as they are in a TEXT column; :mod:`syncengine.runtime.heldbatch`).
The ``paused_tables`` row of the table keeps ``held_through``, the position of the last change
held, written in the same transaction as the rows: a replayed change at or below it was held
already and is not held twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from syncengine.state.base import HeldBatch, Pause
from syncengine.state.sql.base import StateSQL, StateTransaction, now

#: the conflict id of changes held by a pause rather than behind a conflict
PAUSE_HOLD = 0


class SQLPauses(StateSQL):
    def request_pause(self, pipeline: str, tables: Iterable[str], status: str) -> None:
        """Pause ``tables`` (``status``: ``paused`` when nothing applies meanwhile, else
        ``pausing`` until the applying process has seen it); an already paused table stays
        as it is, a resuming one is paused again (what it has not released stays held)."""
        with self.transaction() as db:
            for table in tables:
                stamp = now()
                db.execute(
                    "INSERT INTO paused_tables(pipeline, source_table, status, requested_at, "
                    "paused_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT(pipeline, source_table) DO "
                    "UPDATE SET status=CASE WHEN paused_tables.status='resuming' THEN 'paused' "
                    "ELSE paused_tables.status END",
                    (pipeline, table, status, stamp, stamp if status == "paused" else None),
                )

    def request_resume(self, pipeline: str, tables: Iterable[str] | None) -> list[str]:
        """Mark paused tables (all of the pipeline's with ``None``) to be released; which."""
        with self.transaction() as db:
            known = [
                r[0]
                for r in db.execute(
                    "SELECT source_table FROM paused_tables WHERE pipeline=? ORDER BY 1",
                    (pipeline,),
                )
            ]
            wanted = None if tables is None else set(tables)
            chosen = known if wanted is None else [t for t in known if t in wanted]
            for table in chosen:
                db.execute(
                    "UPDATE paused_tables SET status='resuming', requested_at=? "
                    "WHERE pipeline=? AND source_table=?",
                    (now(), pipeline, table),
                )
        return chosen

    def pauses(self, pipeline: str) -> dict[str, Pause]:
        rows = self.db.execute(
            "SELECT source_table, status, held_through, held_rows, requested_at, paused_at "
            "FROM paused_tables WHERE pipeline=?",
            (pipeline,),
        )
        return {r[0]: Pause(*r) for r in rows}

    def confirm_pauses(self, pipeline: str) -> list[str]:
        """``pausing`` → ``paused``: called by the process that applies, before it applies a
        group with the pause in force; which tables changed."""
        with self.transaction() as db:
            rows = db.execute(
                "UPDATE paused_tables SET status='paused', paused_at=? "
                "WHERE pipeline=? AND status='pausing' RETURNING source_table",
                (now(), pipeline),
            ).fetchall()
        return [r[0] for r in rows]

    def hold_batches(
        self,
        db: StateTransaction,
        pipeline: str,
        table: str,
        batches: Sequence[tuple[str, int, bytes]],
    ) -> None:
        """Hold (last position, rows, IPC bytes) batches of a paused table; move its fence."""
        for position, _, payload in batches:
            db.execute(
                "INSERT INTO held_changes(id, conflict_id, pipeline, target_table, row_key, "
                "change) VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM held_changes), ?, ?, ?, "
                "?, ?)",
                (PAUSE_HOLD, pipeline, table, position, payload),
            )
        if batches:
            db.execute(
                "UPDATE paused_tables SET held_through=?, held_rows=held_rows+? "
                "WHERE pipeline=? AND source_table=?",
                (max(p for p, _, _ in batches), sum(n for _, n, _ in batches), pipeline, table),
            )

    def held_batches(self, pipeline: str, table: str, limit: int) -> list[HeldBatch]:
        """The oldest ``limit`` held batches of a paused table, in the order they were held."""
        rows = self.db.execute(
            "SELECT id, row_key, change FROM held_changes WHERE conflict_id=? AND pipeline=? "
            "AND target_table=? ORDER BY id LIMIT ?",
            (PAUSE_HOLD, pipeline, table, limit),
        )
        return [HeldBatch(*r) for r in rows]

    def release_batches(
        self, db: StateTransaction, pipeline: str, table: str, ids: Sequence[int], rows: int
    ) -> None:
        """Forget held batches (``rows`` changes) that are applied at the target."""
        db.executemany("DELETE FROM held_changes WHERE id=?", [(i,) for i in ids])
        db.execute(
            "UPDATE paused_tables SET "
            "held_rows=CASE WHEN held_rows > ? THEN held_rows-? ELSE 0 END "
            "WHERE pipeline=? AND source_table=?",
            (rows, rows, pipeline, table),
        )

    def finish_resume(self, db: StateTransaction, pipeline: str, table: str) -> bool:
        """End a table's pause once it holds nothing any more (False: it still does)."""
        left = db.execute(
            "SELECT COUNT(*) FROM held_changes WHERE conflict_id=? AND pipeline=? "
            "AND target_table=?",
            (PAUSE_HOLD, pipeline, table),
        ).fetchone()[0]
        if left:
            return False
        db.execute(
            "DELETE FROM paused_tables WHERE pipeline=? AND source_table=? AND status='resuming'",
            (pipeline, table),
        )
        return True

    def held_totals(self, pipeline: str) -> dict[str, tuple[int, int]]:
        """Per table holding changes: (held batches, their bytes on disk)."""
        rows = self.db.execute(
            "SELECT target_table, COUNT(*), COALESCE(SUM(LENGTH(change)), 0) FROM held_changes "
            "WHERE conflict_id=? AND pipeline=? GROUP BY target_table",
            (PAUSE_HOLD, pipeline),
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}
