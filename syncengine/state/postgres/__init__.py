"""The shared state store: every state protocol (:mod:`syncengine.state.protocols`) in a
PostgreSQL database that every process reaches (``state: postgresql://…``), the queries of
:mod:`syncengine.state.sql` over the connection of :mod:`.connection`. What cluster mode's
workers, the CLI and the console share on any machine."""

from __future__ import annotations

from syncengine.state.postgres.connection import STATE_SCHEMA, PostgresConnection
from syncengine.state.sql.queries import StateQueries


class PostgresStateStore(PostgresConnection, StateQueries):
    """Every concern and the pipeline locks in the ``syncengine_state`` schema of a shared
    database (see :mod:`syncengine.state.postgres.connection`)."""


__all__ = ["STATE_SCHEMA", "PostgresStateStore"]
