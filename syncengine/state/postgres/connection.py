"""The shared state store's database: a schema in PostgreSQL that every process reaches.

Why: the embedded SQLite file belongs to one machine, so in cluster mode the dead letters and
parked conflicts a worker met stayed on that worker. With ``state:`` set to a ``postgresql://``
URL every worker, the CLI and the console read and write the same state, whichever machine
they run on. The tables are those of :mod:`syncengine.state.schema`, in the schema
:data:`STATE_SCHEMA` (not the ``_syncengine`` schema a Postgres target keeps its own
checkpoints in, so the two can share a database without sharing rows); text compares
bytewise (``COLLATE "C"``) as SQLite's does, because source positions are compared as text.

One connection per thread, in autocommit: a read outside a transaction sees what is committed.
A write transaction first takes one transaction-scoped advisory lock, so write transactions
run one at a time across every process, as SQLite's ``BEGIN IMMEDIATE`` makes them in the
file: the shared queries draw new ids as ``MAX(id) + 1`` and read-then-write, which needs
that. State writes are small (a checkpoint, a group's counters, a dead letter), so the queue
behind the lock stays short.

Driver errors become :class:`~syncengine.errors.StateUnavailable` (connection lost, server
restarting: retried by the runtime) or :class:`~syncengine.errors.FatalError`, with any
password removed from the message.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

import psycopg
from psycopg import sql

from syncengine import pgsession
from syncengine.config.secrets import redact, register_connection_secrets
from syncengine.errors import FatalError
from syncengine.state.postgres.errors import translated
from syncengine.state.postgres.locks import PostgresLock
from syncengine.state.schema import FORMAT_VERSION, INDEXES, MIGRATIONS, TABLES
from syncengine.state.sql.base import StateCursor, StateSQL

STATE_SCHEMA = "syncengine_state"

#: the advisory lock every write transaction takes first (one writer at a time)
_WRITER_LOCK = "syncengine.state.writer"

#: columns whose values are bytes (a paused table's Arrow batches, held changes' JSON)
_BYTES = {("held_changes", "change")}


def postgres_type(table: str, column: str, kind: str) -> str:
    """A column type of :data:`TABLES` as this store declares it: integers 64-bit (counters
    outlive 2³¹), floats double, text bytewise-ordered, bytes as ``bytea``."""
    if (table, column) in _BYTES:
        return re.sub(r"^TEXT\b", "BYTEA", kind)
    kind = re.sub(r"^INTEGER\b", "BIGINT", kind)
    kind = re.sub(r"^REAL\b", "DOUBLE PRECISION", kind)
    return re.sub(r"^TEXT\b", 'TEXT COLLATE "C"', kind)


@lru_cache(maxsize=512)
def _placeholders(statement: str) -> str:
    """The shared queries' ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled).
    The queries carry no ``?`` inside string literals."""
    return statement.replace("%", "%%").replace("?", "%s")


def _storable(parameters: Sequence[Any]) -> Sequence[Any]:
    """Text as Postgres can hold it: a NUL character (which SQLite keeps, and a Mongo string
    or an error message can carry) becomes the six characters ``\\u0000``, the same way on
    every write and every lookup, so a lookup by such a key finds it (a key read back carries
    the escape: only Mongo string keys with a NUL can meet that)."""
    if not any(isinstance(p, str) and "\x00" in p for p in parameters):
        return parameters
    return [p.replace("\x00", "\\u0000") if isinstance(p, str) else p for p in parameters]


class PostgresSession:
    """A psycopg connection speaking the shared queries' dialect (``?`` placeholders)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, statement: str, parameters: Sequence[Any] = (), /) -> StateCursor:
        try:
            return self.conn.execute(_placeholders(statement), _storable(parameters))
        except psycopg.Error as exc:
            raise translated(exc, "a query") from None

    def executemany(self, statement: str, parameters: Any, /) -> StateCursor:
        cur = self.conn.cursor()
        try:
            cur.executemany(_placeholders(statement), map(_storable, parameters))
        except psycopg.Error as exc:
            raise translated(exc, "a query") from None
        return cur


class PostgresConnection(StateSQL):
    """The database, one connection per thread, serialized write transactions, the schema
    and its migration, and advisory-lock pipeline locks."""

    def __init__(self, url: str) -> None:
        register_connection_secrets(url)  # libpq may quote a malformed password back
        self.url = url
        #: what messages show instead of the URL
        self.where = redact(url)
        self._local = threading.local()
        self._migrate()

    @property
    def db(self) -> PostgresSession:
        session: PostgresSession | None = getattr(self._local, "session", None)
        if session is None or session.conn.closed or session.conn.broken:
            session = PostgresSession(self._connect())
            self._local.session = session
        return session

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(  # the pid tells an operator which process it is
                self.url, autocommit=True, application_name=f"syncengine state {os.getpid()}"
            )
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(STATE_SCHEMA)))
            pgsession.pin_sync(conn)
        except psycopg.Error as exc:
            raise translated(exc, f"connecting to {self.where}") from None
        return conn

    @contextmanager
    def transaction(self) -> Iterator[PostgresSession]:
        session = self.db
        try:
            with session.conn.transaction():
                session.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (_WRITER_LOCK,))
                yield session
        except psycopg.Error as exc:  # the COMMIT itself (a lost connection)
            raise translated(exc, "a commit") from None

    @contextmanager
    def _quiet_transaction(self) -> Iterator[PostgresSession]:
        """A commit that does not wait for the WAL flush (``synchronous_commit = off``): a
        crash of the server may lose the last few such commits, never corrupt anything."""
        with self.transaction() as session:
            session.execute("SET LOCAL synchronous_commit TO off")
            yield session

    def close(self) -> None:
        session: PostgresSession | None = getattr(self._local, "session", None)
        if session is not None:
            session.conn.close()
            self._local.session = None

    def _migrate(self) -> None:
        conn = self.db.conn
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_WRITER_LOCK,))
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(STATE_SCHEMA))
                )
                for table, (columns, key) in TABLES.items():
                    conn.execute(_create_table(table, columns, key))
                meta = sql.Identifier(STATE_SCHEMA, "meta")
                row = conn.execute(
                    sql.SQL("SELECT value FROM {} WHERE name='format_version'").format(meta)
                ).fetchone()
                version = int(row[0]) if row else FORMAT_VERSION
                if version > FORMAT_VERSION:
                    raise FatalError(
                        f"state store {self.where} has format {version}, newer than this "
                        f"syncengine understands ({FORMAT_VERSION})",
                        hint="upgrade syncengine",
                    )
                for step in range(version + 1, FORMAT_VERSION + 1):
                    for table, column, kind in MIGRATIONS.get(step, []):
                        conn.execute(
                            sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                                sql.Identifier(STATE_SCHEMA, table),
                                sql.Identifier(column),
                                sql.SQL(postgres_type(table, column, kind)),
                            )
                        )
                for name, (table, indexed, where) in INDEXES.items():
                    conn.execute(
                        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({}) WHERE {}").format(
                            sql.Identifier(name),
                            sql.Identifier(STATE_SCHEMA, table),
                            sql.SQL(", ").join(map(sql.Identifier, indexed.split(", "))),
                            sql.SQL(where),
                        )
                    )
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {}(name, value) VALUES ('format_version', %s) "
                        "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
                    ).format(meta),
                    (str(FORMAT_VERSION),),
                )
        except psycopg.Error as exc:
            raise translated(exc, f"preparing the state schema in {self.where}") from None

    def lock(self, pipeline: str, purpose: str) -> PostgresLock:
        """An exclusive per-pipeline lock every process that shares this store respects."""
        return PostgresLock(self.url, pipeline, purpose)


def _create_table(table: str, columns: list[tuple[str, str]], key: list[str]) -> sql.Composed:
    body = sql.SQL(", ").join(
        sql.SQL("{} {}").format(
            sql.Identifier(name),
            sql.SQL(postgres_type(table, name, kind)),
        )
        for name, kind in columns
    )
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))").format(
        sql.Identifier(STATE_SCHEMA, table), body, sql.SQL(", ").join(map(sql.Identifier, key))
    )
