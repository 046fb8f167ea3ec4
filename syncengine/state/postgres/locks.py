"""Per-pipeline locks of the shared state store: session advisory locks in its database.

A lock is held by a connection of its own, opened by :meth:`PostgresLock.acquire` and closed
by :meth:`~PostgresLock.release`; the server releases it when that connection ends, so a
holder killed by SIGKILL (or a machine that vanished, once its TCP connection times out)
leaves no stale lock. Who holds it is the holding connection's ``application_name``
(``syncengine <pid> <host> <purpose>``), read from ``pg_stat_activity`` for the refusal
message, the console, ``resnapshot`` and ``checkpoints remove`` (which hand their request to
the daemon through the store, wherever it runs) and ``reload`` (which can signal a daemon on
its own machine only).
"""

from __future__ import annotations

import os
import socket
from typing import Any, Self

import psycopg

from syncengine.config.secrets import register_connection_secrets
from syncengine.errors import LockHeld
from syncengine.state.locks import HeldWhileInside, Holder
from syncengine.state.postgres.errors import translated

#: the advisory lock key of a pipeline: hashtextextended of this prefix and its name
_PREFIX = "syncengine.pipeline:"

#: who holds the advisory lock of a key in this database
_HOLDER = (
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended(%s, 0)"
)


class PostgresLock(HeldWhileInside):
    def __init__(self, url: str, pipeline: str, purpose: str) -> None:
        register_connection_secrets(url)
        self.url = url
        self.pipeline = pipeline
        self.purpose = purpose
        self._key = _PREFIX + pipeline
        self._conn: psycopg.Connection[Any] | None = None

    def acquire(self) -> Self:
        # application_name is cut at 63 bytes: the pid and host first, the purpose last
        name = f"syncengine {os.getpid()} {_host()} {self.purpose}"[:63]
        conn = self._connect(name)
        taken = conn.execute(
            "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (self._key,)
        ).fetchone()
        if not (taken and taken[0]):
            found = self._peek(conn)
            conn.close()
            holder = found.describe() if found else "another process"
            raise LockHeld(
                f"pipeline '{self.pipeline}' is busy: {holder} holds its lock",
                hint=f"wait for it to finish or stop it before running {self.purpose}",
            )
        self._conn = conn
        return self

    def holder(self) -> Holder | None:
        return self.peek()

    def peek(self) -> Holder | None:
        conn = self._connect("syncengine lock peek")
        try:
            return self._peek(conn)
        finally:
            conn.close()

    def lost(self) -> bool:
        """Taken, and its connection ended (the server restarted, the connection was cut):
        the server released the lock with it."""
        if self._conn is None:
            return False
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error:
            self._conn.close()
            self._conn = None
            return True
        return False

    def release(self) -> None:
        if self._conn is not None:
            self._conn.close()  # the server drops the session's advisory locks with it
            self._conn = None

    def _peek(self, conn: psycopg.Connection[Any]) -> Holder | None:
        row = conn.execute(_HOLDER, (self._key,)).fetchone()
        return _parse(row[0]) if row else None

    def _connect(self, application_name: str) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.url, autocommit=True, application_name=application_name)
        except psycopg.Error as exc:
            raise translated(exc, f"taking the lock of pipeline '{self.pipeline}'") from None


def _host() -> str:
    """This machine's name as a lock holder records it (no spaces: the name is split on them)."""
    return socket.gethostname()[:32].replace(" ", "_")


def _parse(application_name: str | None) -> Holder | None:
    """``syncengine <pid> <host> <purpose>`` → its holder (the host None when it is this
    one); another client's name (nothing syncengine took): None."""
    parts = (application_name or "").split(" ", 3)
    if len(parts) != 4 or parts[0] != "syncengine" or not parts[1].isdigit():
        return None
    return Holder(int(parts[1]), parts[3], None if parts[2] == _host() else parts[2])
