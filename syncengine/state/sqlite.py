"""The embedded state store: one SQLite file in WAL mode.

Why SQLite: nothing beyond the source and target needs to run, and SQLite's WAL journal keeps
the last committed transaction intact when the process is killed mid-write. Every write here
is one transaction; ``synchronous=FULL`` so a committed checkpoint survives power loss too.
The file is created owner-only (0600): it holds row images.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncengine.errors import FatalError
from syncengine.state.base import Chunk, Conflict, DeadLetter, StoredCheckpoint
from syncengine.state.locks import PipelineLock
from syncengine.state.schema import FORMAT_VERSION, INDEXES, MIGRATIONS, TABLES


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _ddl(table: str) -> str:
    columns, key = TABLES[table]
    body = ", ".join(f"{name} {kind}" for name, kind in columns)
    return f"CREATE TABLE IF NOT EXISTS {table} ({body}, PRIMARY KEY ({', '.join(key)}))"


class SQLiteStateStore:
    """Checkpoints, chunk progress, shadow rows, conflicts and dead letters in one file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
                os.close(fd)
        self._local = threading.local()
        self._migrate()

    # -- connection ---------------------------------------------------------------------

    @property
    def db(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _migrate(self) -> None:
        with self.transaction() as db:
            for table in TABLES:
                db.execute(_ddl(table))
            row = db.execute("SELECT value FROM meta WHERE name='format_version'").fetchone()
            version = int(row[0]) if row else FORMAT_VERSION
            if version > FORMAT_VERSION:
                raise FatalError(
                    f"state store {self.path} has format {version}, newer than this syncengine "
                    f"understands ({FORMAT_VERSION})",
                    hint="upgrade syncengine",
                )
            for step in range(version + 1, FORMAT_VERSION + 1):
                for table, column, kind in MIGRATIONS.get(step, []):
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            for name, (table, columns, where) in INDEXES.items():
                db.execute(
                    f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns}) WHERE {where}"
                )
            db.execute(
                "INSERT INTO meta(name, value) VALUES ('format_version', ?) "
                "ON CONFLICT(name) DO UPDATE SET value=excluded.value",
                (str(FORMAT_VERSION),),
            )

    # -- locks ----------------------------------------------------------------------------

    def lock(self, pipeline: str, purpose: str) -> PipelineLock:
        """An exclusive per-pipeline lock (daemon, sync and backfill refuse to overlap)."""
        base = self.path.parent if str(self.path) != ":memory:" else Path(".")
        return PipelineLock(base / f"{self.path.name}.locks", pipeline, purpose)

    # -- checkpoints ----------------------------------------------------------------------

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
        db: sqlite3.Connection,
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
            (pipeline, stream, position, json.dumps(details or {}), FORMAT_VERSION, _now()),
        )

    def list_checkpoints(self, pipeline: str | None = None) -> list[StoredCheckpoint]:
        sql = "SELECT pipeline, stream, position, details, version, updated_at FROM checkpoints"
        args: tuple[Any, ...] = ()
        if pipeline:
            sql += " WHERE pipeline=?"
            args = (pipeline,)
        return [_checkpoint(r) for r in self.db.execute(sql + " ORDER BY 1, 2", args)]

    def reset_checkpoints(self, pipeline: str, stream: str | None = None) -> int:
        with self.transaction() as db:
            if stream is None:
                cur = db.execute("DELETE FROM checkpoints WHERE pipeline=?", (pipeline,))
                db.execute("DELETE FROM chunks WHERE pipeline=?", (pipeline,))
            else:
                cur = db.execute(
                    "DELETE FROM checkpoints WHERE pipeline=? AND stream=?", (pipeline, stream)
                )
            return cur.rowcount

    # -- snapshot chunks ------------------------------------------------------------------

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
                    (pipeline, c.table, c.chunk, c.lower, c.upper, c.status, c.rows, _now())
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

    # -- shadow ---------------------------------------------------------------------------

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
        db: sqlite3.Connection,
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

    def purge_tombstones(self, db: sqlite3.Connection, pipeline: str, before: str) -> None:
        """Inside a caller's transaction: drop tombstones older than the checkpoint ``before``
        (a replay starts after the checkpoint, so they can no longer fence anything)."""
        db.execute(
            "DELETE FROM shadow WHERE pipeline=? AND row_hash='' AND position < ?",
            (pipeline, before),
        )

    # -- conflicts ------------------------------------------------------------------------

    def park_conflict(self, db: sqlite3.Connection, conflict: Conflict) -> int:
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
                _now(),
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
        db: sqlite3.Connection,
        pipeline: str,
        table: str,
        held: Iterable[tuple[int, str, str]],
    ) -> None:
        """(conflict_id, row_key, change JSON) rows that wait behind a pending conflict."""
        for conflict_id, key, change in held:
            db.execute(
                "INSERT INTO held_changes(id, conflict_id, pipeline, target_table, row_key, "
                "change) VALUES ((SELECT COALESCE(MAX(id), 0) + 1 FROM held_changes), ?, ?, ?, "
                "?, ?)",
                (conflict_id, pipeline, table, key, change),
            )

    def held_changes(self, conflict_id: int) -> list[str]:
        rows = self.db.execute(
            "SELECT change FROM held_changes WHERE conflict_id=? ORDER BY id", (conflict_id,)
        )
        return [r[0] for r in rows]

    def mark_resolved(
        self, db: sqlite3.Connection, conflict_id: int, resolution: str, decided_by: str
    ) -> None:
        db.execute(
            "UPDATE conflicts SET status='resolved', resolved_at=?, resolution=?, decided_by=? "
            "WHERE id=?",
            (_now(), resolution, decided_by, conflict_id),
        )
        db.execute("DELETE FROM held_changes WHERE conflict_id=?", (conflict_id,))

    def write_audit(
        self,
        db: sqlite3.Connection,
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
                (pipeline, table, key, strategy, outcome, decided_by, _now()),
            )

    # -- dead letters ---------------------------------------------------------------------

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
                        _now(),
                    ),
                )
                count += 1
            return count

    def list_dead_letters(
        self, pipeline: str | None = None, include_replayed: bool = False
    ) -> list[DeadLetter]:
        sql = (
            "SELECT pipeline, source_table, stage, reason, payload, position, id, created_at, "
            "replayed_at FROM dead_letters WHERE 1=1"
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
                "UPDATE dead_letters SET replayed_at=? WHERE id=?", [(_now(), i) for i in ids]
            )

    def counts(self, pipeline: str) -> dict[str, int]:
        """Pending conflicts and unreplayed dead letters, for status and metrics."""
        conflicts = self.db.execute(
            "SELECT COUNT(*) FROM conflicts WHERE pipeline=? AND status='pending'", (pipeline,)
        ).fetchone()[0]
        letters = self.db.execute(
            "SELECT COUNT(*) FROM dead_letters WHERE pipeline=? AND replayed_at IS NULL",
            (pipeline,),
        ).fetchone()[0]
        return {"pending_conflicts": int(conflicts), "dead_letters": int(letters)}


def _checkpoint(row: Sequence[Any]) -> StoredCheckpoint:
    pipeline, stream, position, details, version, updated_at = row
    return StoredCheckpoint(
        pipeline, stream, position, json.loads(details), int(version), updated_at
    )
