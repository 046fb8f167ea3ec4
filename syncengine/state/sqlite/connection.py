"""The embedded state store's file: one SQLite file in WAL mode, its schema and its locks.

Why SQLite: nothing beyond the source and target needs to run, and SQLite's WAL journal keeps
the last committed transaction intact when the process is killed mid-write. Every write here
is one transaction; ``synchronous=FULL`` so a committed checkpoint survives power loss too.
The file is created owner-only (0600): it holds row images.

Each concern's queries live in :mod:`syncengine.state.sql`, shared with the Postgres store;
:class:`syncengine.state.sqlite.SQLiteStateStore` joins them over this connection.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from syncengine.errors import FatalError
from syncengine.state.locks import PipelineLock
from syncengine.state.schema import FORMAT_VERSION, INDEXES, MIGRATIONS, TABLES
from syncengine.state.sql.base import StateSQL


def _ddl(table: str) -> str:
    columns, key = TABLES[table]
    body = ", ".join(f"{name} {kind}" for name, kind in columns)
    return f"CREATE TABLE IF NOT EXISTS {table} ({body}, PRIMARY KEY ({', '.join(key)}))"


class SQLiteConnection(StateSQL):
    """The file, one connection per thread, transactions, schema migration and locks."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
                os.close(fd)
        self._local = threading.local()
        self._migrate()

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

    @contextmanager
    def _quiet_transaction(self) -> Iterator[sqlite3.Connection]:
        """A transaction whose commit does not fsync, for what is informational (a chart's
        samples, counters): in WAL mode ``synchronous=NORMAL`` appends the commit to the WAL
        without syncing it, and the next durable commit (or WAL checkpoint) syncs it along.
        The file stays consistent either way; only the last such commits can be lost with the
        machine, never with the process. A flush costs ~1–5 ms on the event loop, where a
        backfill's COPY pumps wait for it."""
        db = self.db
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self.transaction() as tx:
                yield tx
        finally:
            db.execute("PRAGMA synchronous=FULL")

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
                    # (a table created above by this version's DDL has the column already)
                    present = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
                    if column not in present:
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

    def lock(self, pipeline: str, purpose: str) -> PipelineLock:
        """An exclusive per-pipeline lock (daemon, sync and backfill refuse to overlap)."""
        base = self.path.parent if str(self.path) != ":memory:" else Path(".")
        return PipelineLock(base / f"{self.path.name}.locks", pipeline, purpose)
