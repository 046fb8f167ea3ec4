"""Opening a connection to a Postgres source, from its DSN alone.

Shared by the source (:func:`.source.connect_source`, which takes the config) and the decode
process (:mod:`.decodechild`), which gets the DSN in its parameters instead of the config
model: importing the config models (pydantic) cost the child ≈ 0.17 s of a start-up that
stands between a one-shot drain and its first change.
"""

from __future__ import annotations

from typing import Any

import psycopg

from syncengine.pgsession import pin_later, startup_options
from syncengine.sources.postgres import deadline
from syncengine.sources.postgres.pgerrors import map_error


async def connect(
    dsn: str, query_timeout: float | None, replication: bool = False
) -> psycopg.AsyncConnection:
    """A new connection. Ordinary ones bound every statement by ``query_timeout``; a
    replication connection's silence is the stream's to detect (``check_alive``), and
    its slot creation may wait for long transactions. See :mod:`.deadline`."""
    extra: dict[str, Any] = {"replication": "database"} if replication else {}
    try:
        conn = await deadline.connect(
            dsn,
            None if replication else query_timeout,
            autocommit=True,
            options=startup_options(dsn),
            **extra,
        )
    except psycopg.Error as exc:
        raise map_error(exc, "connecting") from exc
    if replication:  # a walsender is not closed for idling (a backfill under a 300 ms limit)
        return conn
    try:
        await pin_later(conn)
    except psycopg.Error as exc:
        await conn.close()
        raise map_error(exc, "connecting") from exc
    return conn
