"""Checkpoints in the state store: one row per pipeline and source stream."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from syncengine.state.base import StoredCheckpoint
from syncengine.state.schema import FORMAT_VERSION
from syncengine.state.sql.base import StateSQL, StateTransaction, now


class SQLCheckpoints(StateSQL):
    def get_checkpoint(self, pipeline: str, stream: str) -> StoredCheckpoint | None:
        row = self.db.execute(
            "SELECT pipeline, stream, position, details, version, updated_at FROM checkpoints "
            "WHERE pipeline=? AND stream=?",
            (pipeline, stream),
        ).fetchone()
        return _checkpoint(row) if row else None

    def put_checkpoint(
        self, pipeline: str, stream: str, position: str, details: dict[str, Any] | None = None
    ) -> None:
        with self.transaction() as db:
            self.write_checkpoint(db, pipeline, stream, position, details)

    def write_checkpoint(
        self,
        db: StateTransaction,
        pipeline: str,
        stream: str,
        position: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Write inside a caller's transaction (so other state commits with it)."""
        db.execute(
            "INSERT INTO checkpoints(pipeline, stream, position, details, version, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(pipeline, stream) DO UPDATE SET "
            "position=excluded.position, details=excluded.details, version=excluded.version, "
            "updated_at=excluded.updated_at",
            (pipeline, stream, position, json.dumps(details or {}), FORMAT_VERSION, now()),
        )

    def list_checkpoints(self, pipeline: str | None = None) -> list[StoredCheckpoint]:
        sql = "SELECT pipeline, stream, position, details, version, updated_at FROM checkpoints"
        args: tuple[Any, ...] = ()
        if pipeline:
            sql += " WHERE pipeline=?"
            args = (pipeline,)
        return [_checkpoint(r) for r in self.db.execute(sql + " ORDER BY 1, 2", args)]

    def reset_checkpoints(
        self, pipeline: str, stream: str | None = None, keep: Sequence[str] = ()
    ) -> int:
        with self.transaction() as db:
            if stream is None:
                kept = "".join(" AND stream<>?" for _ in keep)
                cur = db.execute(
                    f"DELETE FROM checkpoints WHERE pipeline=?{kept}", (pipeline, *keep)
                )
                db.execute("DELETE FROM chunks WHERE pipeline=?", (pipeline,))
            else:
                cur = db.execute(
                    "DELETE FROM checkpoints WHERE pipeline=? AND stream=?", (pipeline, stream)
                )
            return cur.rowcount


def _checkpoint(row: Sequence[Any]) -> StoredCheckpoint:
    pipeline, stream, position, details, version, updated_at = row
    return StoredCheckpoint(
        pipeline, stream, position, json.loads(details), int(version), updated_at
    )
