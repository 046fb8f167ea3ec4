"""What the concern modules need from a store's connection, whichever database it is.

Each concern's queries (checkpoints, chunks, shadow, conflicts, dead letters, status, lag
history, pauses, table requests, forgetting a table) are written once, in the SQL that both the
embedded SQLite file and a shared PostgreSQL database accept, with ``?`` placeholders (the
Postgres store hands psycopg ``%s``). A store is these concern classes joined over one
:class:`StateSQL` implementation: :class:`syncengine.state.sqlite.SQLiteStateStore` and
:class:`syncengine.state.postgres.PostgresStateStore`.

Portable here means: ``ON CONFLICT … DO UPDATE`` with the conflicting row named by its table,
``CASE`` instead of SQLite's two-argument ``MAX``, ``IS [NOT] DISTINCT FROM`` instead of
SQLite's ``IS``, ``RETURNING``, and new ids as ``MAX(id) + 1`` inside a write transaction (both
stores let one write transaction run at a time, so no two draw the same id).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol


def now() -> str:
    """The time stored with a row (ISO 8601, UTC)."""
    return datetime.now(UTC).isoformat()


class StateCursor(Protocol):
    """The result of one statement: rows and how many it changed."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class StateTransaction(Protocol):
    """An open state transaction (or, outside one, the store's connection): statements with
    ``?`` placeholders."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> StateCursor: ...

    def executemany(self, sql: str, parameters: Any, /) -> StateCursor: ...


class StateSQL:
    """The connection the concern classes share: reads go through :attr:`db` (each statement
    sees what is committed), writes through :meth:`transaction`."""

    @property
    def db(self) -> StateTransaction:
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[StateTransaction]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        raise NotImplementedError

    def _quiet_transaction(self) -> AbstractContextManager[StateTransaction]:
        """A write transaction whose commit need not survive a power loss (a chart's
        samples, counters): it must not add a disk flush to the daemon's work."""
        raise NotImplementedError

    def _meta(self, name: str) -> Any:
        """The JSON value kept in ``meta`` under ``name`` (None: none)."""
        row = self.db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return None if row is None else json.loads(row[0])

    def _put_meta(self, name: str, value: object) -> None:
        """Keep ``value`` as JSON in ``meta`` under ``name``, replacing what was there."""
        with self.transaction() as db:
            db.execute(
                "INSERT INTO meta(name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET "
                "value=excluded.value",
                (name, json.dumps(value)),
            )
