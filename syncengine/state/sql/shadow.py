"""Shadow rows in the state store: per key, what the source last said and its position."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from syncengine.state.sql.base import StateSQL, StateTransaction


class SQLShadow(StateSQL):
    def get_shadow(
        self, pipeline: str, table: str, keys: Sequence[str]
    ) -> dict[str, tuple[str, str | None, str | None]]:
        """row_key -> (hash, base JSON, position) for the keys that have a shadow row."""
        out: dict[str, tuple[str, str | None, str | None]] = {}
        db = self.db
        for start in range(0, len(keys), 500):
            part = list(keys[start : start + 500])
            marks = ",".join("?" * len(part))
            rows = db.execute(
                f"SELECT row_key, row_hash, base, position FROM shadow WHERE pipeline=? AND "
                f"target_table=? AND row_key IN ({marks})",
                (pipeline, table, *part),
            )
            out.update({k: (h, b, p) for k, h, b, p in rows})
        return out

    def write_shadow(
        self,
        db: StateTransaction,
        pipeline: str,
        table: str,
        upserts: Iterable[tuple[str, str, str | None, str | None]],
        deletes: Iterable[str] = (),
    ) -> None:
        """Inside a caller's transaction: (row_key, hash, base, position) upserts and key
        deletes."""
        db.executemany(
            "INSERT INTO shadow(pipeline, target_table, row_key, row_hash, base, position) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(pipeline, target_table, row_key) DO UPDATE SET "
            "row_hash=excluded.row_hash, base=excluded.base, position=excluded.position",
            [(pipeline, table, k, h, b, p) for k, h, b, p in upserts],
        )
        db.executemany(
            "DELETE FROM shadow WHERE pipeline=? AND target_table=? AND row_key=?",
            [(pipeline, table, k) for k in deletes],
        )

    def purge_tombstones(self, db: StateTransaction, pipeline: str, before: str) -> None:
        """Inside a caller's transaction: drop tombstones older than the checkpoint ``before``
        (a replay starts after the checkpoint, so they can no longer fence anything)."""
        db.execute(
            "DELETE FROM shadow WHERE pipeline=? AND row_hash='' AND position < ?",
            (pipeline, before),
        )

    def clear_shadow(self, db: StateTransaction, pipeline: str, table: str) -> None:
        """Inside a caller's transaction: drop a table's shadow rows (it was truncated)."""
        db.execute("DELETE FROM shadow WHERE pipeline=? AND target_table=?", (pipeline, table))
