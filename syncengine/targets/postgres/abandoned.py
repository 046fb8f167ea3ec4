"""Ending the server session of a target connection the engine gave up on.

A group's statements past ``batch.timeout`` mean the connection is presumed lost: the engine
closes it and the pipeline starts again. The server may not know. Through a half-open TCP
connection (a NAT or proxy that keeps its side open: no FIN or RST reaches the server) the
backend waits for its client inside the group's open transaction, an aborted one after a
cancel, and keeps every row lock it took, the checkpoint row's among them. Each later group
then waits on those locks until its own deadline, and so on (the half-open fault test, long
mode: not consistent 150 s after the fault, every retry timing out). The server ends such a
session only when TCP keepalives fail: two hours by default, never through a middlebox that
answers them.

So the target notes its session (backend pid and start time) when it connects, and when it
drops a connection that broke or was inside a transaction it terminates that session from a
connection of its own (``pg_terminate_backend``: allowed for sessions of the same role). The
start time guards against a recycled pid. Best effort and bounded: a server that cannot be
reached (restarting: its sessions are gone anyway) or refuses is logged at debug level and
the pipeline goes on as before. Only sessions this process opened and abandoned are touched.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.pq import TransactionStatus

log = logging.getLogger("syncengine.targets.postgres")

#: how long ending an abandoned session may take (connect and one statement): a server that
#: cannot be reached must not hold the pipeline's restart for long
END_SECONDS = 5.0


@dataclass(frozen=True)
class ServerSession:
    pid: int
    started: datetime


async def identify(conn: psycopg.AsyncConnection) -> ServerSession | None:
    """The server session behind ``conn`` (None if the server does not show it)."""
    cur = await conn.execute(
        "SELECT pid, backend_start FROM pg_catalog.pg_stat_activity "
        "WHERE pid = pg_catalog.pg_backend_pid()"
    )
    row = await cur.fetchone()
    return ServerSession(int(row[0]), row[1]) if row is not None else None


def abandoned(conn: psycopg.AsyncConnection) -> bool:
    """Whether dropping ``conn`` may leave its server session in a transaction: it broke (a
    cancel that did not end its statement closes it) or it is inside one."""
    return conn.closed or conn.pgconn.transaction_status != TransactionStatus.IDLE


async def end(dsn: str, session: ServerSession, what: str) -> bool:
    """Terminate ``session`` if it still runs; whether it did."""
    try:
        async with asyncio.timeout(END_SECONDS):
            conn = await psycopg.AsyncConnection.connect(
                dsn, autocommit=True, connect_timeout=int(END_SECONDS)
            )
            async with conn:
                cur = await conn.execute(
                    "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity "
                    "WHERE pid = %s AND backend_start = %s AND pid <> pg_catalog.pg_backend_pid()",
                    (session.pid, session.started),
                )
                ended = any(row[0] for row in await cur.fetchall())
    except (psycopg.Error, OSError, TimeoutError) as exc:
        log.debug("%s: could not end the abandoned target session %d: %s", what, session.pid, exc)
        return False
    if ended:
        log.warning(
            "%s: ended the target session the engine gave up on (server pid %d), so the "
            "transaction it may still hold open cannot block the next group",
            what,
            session.pid,
        )
    return ended
