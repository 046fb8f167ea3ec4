"""The embedded state store: every state protocol (:mod:`syncengine.state.protocols`) over one
SQLite file, the queries of :mod:`syncengine.state.sql` over the connection of
:mod:`.connection`."""

from __future__ import annotations

from syncengine.state.sql.queries import StateQueries
from syncengine.state.sqlite.connection import SQLiteConnection


class SQLiteStateStore(SQLiteConnection, StateQueries):
    """Every concern and the pipeline locks in one file (see
    :mod:`syncengine.state.sqlite.connection` for why SQLite)."""


__all__ = ["SQLiteStateStore"]
