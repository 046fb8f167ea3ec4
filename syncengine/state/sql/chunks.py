"""Snapshot chunk progress in the state store: one row per key range of a table."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from syncengine.state.base import Chunk
from syncengine.state.sql.base import StateSQL, now


class SQLChunks(StateSQL):
    def put_chunks(self, pipeline: str, chunks: Iterable[Chunk]) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO chunks(pipeline, source_table, chunk, lower_bound, upper_bound, "
                "status, row_count, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(pipeline, source_table, chunk) DO UPDATE SET "
                "lower_bound=excluded.lower_bound, upper_bound=excluded.upper_bound, "
                "status=excluded.status, row_count=excluded.row_count, "
                "updated_at=excluded.updated_at",
                [
                    (pipeline, c.table, c.chunk, c.lower, c.upper, c.status, c.rows, now())
                    for c in chunks
                ],
            )

    def get_chunks(self, pipeline: str, table: str | None = None) -> list[Chunk]:
        sql = (
            "SELECT source_table, chunk, lower_bound, upper_bound, status, row_count FROM chunks "
            "WHERE pipeline=?"
        )
        args: tuple[Any, ...] = (pipeline,)
        if table is not None:
            sql += " AND source_table=?"
            args += (table,)
        return [Chunk(*row) for row in self.db.execute(sql + " ORDER BY 1, 2", args)]

    def clear_chunks(self, pipeline: str, table: str | None = None) -> None:
        with self.transaction() as db:
            if table is None:
                db.execute("DELETE FROM chunks WHERE pipeline=?", (pipeline,))
            else:
                db.execute(
                    "DELETE FROM chunks WHERE pipeline=? AND source_table=?", (pipeline, table)
                )
