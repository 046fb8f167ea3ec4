"""Dead letters in the state store: records set aside with their reason, until replayed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from syncengine.state.base import DeadLetter
from syncengine.state.sql.base import StateSQL, now


class SQLDeadLetters(StateSQL):
    def add_dead_letters(self, letters: Iterable[DeadLetter]) -> int:
        with self.transaction() as db:
            count = 0
            for letter in letters:
                db.execute(
                    "INSERT INTO dead_letters(id, pipeline, source_table, stage, reason, payload, "
                    "position, created_at) VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM "
                    "dead_letters), ?, ?, ?, ?, ?, ?, ?)",
                    (
                        letter.pipeline,
                        letter.table,
                        letter.stage,
                        letter.reason,
                        letter.payload,
                        letter.position,
                        now(),
                    ),
                )
                count += 1
            return count

    def list_dead_letters(
        self, pipeline: str | None = None, include_replayed: bool = False
    ) -> list[DeadLetter]:
        sql = (
            "SELECT pipeline, source_table, stage, reason, payload, position, id, created_at, "
            "replayed_at, superseded FROM dead_letters WHERE 1=1"
        )
        args: list[Any] = []
        if pipeline:
            sql += " AND pipeline=?"
            args.append(pipeline)
        if not include_replayed:
            sql += " AND replayed_at IS NULL"
        return [DeadLetter(*row) for row in self.db.execute(sql + " ORDER BY id", args)]

    def mark_replayed(self, ids: Iterable[int]) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE dead_letters SET replayed_at=? WHERE id=?", [(now(), i) for i in ids]
            )

    def mark_superseded(self, marks: Iterable[tuple[int, str]]) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE dead_letters SET superseded=? WHERE id=? AND replayed_at IS NULL",
                [(position, i) for i, position in marks],
            )
