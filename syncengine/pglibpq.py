"""libpq protocol steps on psycopg's ``pgconn``, awaited on the event loop.

The bulk COPY paths drive libpq directly (one C call per row instead of psycopg's generator
and wait per row): the Postgres source's chunk reads (:mod:`syncengine.sources.postgres.copyout`)
and the Postgres target's binary chunk writes (:mod:`syncengine.targets.postgres.passthrough`).
These are the waits they share: the same steps psycopg performs, without its per-call cost.
"""

from __future__ import annotations

import asyncio

import psycopg
from psycopg import errors, pq


async def start_copy(
    conn: psycopg.AsyncConnection, statement: bytes, status: pq.ExecStatus, misuse: str
) -> None:
    """Send a ``COPY`` ``statement`` and wait until the server enters its ``status``
    (COPY_IN / COPY_OUT); the server's error when it refuses the statement. The caller holds
    ``conn.lock``; ``misuse``: the message when the statement is not such a COPY."""
    pgconn = conn.pgconn
    pgconn.send_query(statement)
    await flush(pgconn)
    first = await next_result(pgconn)
    if first is None or first.status != status:
        await drain(pgconn)
        if first is not None and first.status == pq.ExecStatus.FATAL_ERROR:
            raise errors.error_from_result(first, encoding=conn.info.encoding)
        raise psycopg.ProgrammingError(misuse)


async def next_result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult | None:
    """The next result of the running command (None: the command is over)."""
    while pgconn.is_busy():
        await ready(pgconn)
        pgconn.consume_input()
    return pgconn.get_result()


async def drain(pgconn: pq.abc.PGconn) -> None:
    """Read results until libpq says the command is over (the connection is idle again)."""
    while await next_result(pgconn) is not None:
        pass


async def flush(pgconn: pq.abc.PGconn) -> None:
    """Send everything libpq has queued, waiting while the socket is full."""
    while pgconn.flush():
        await ready(pgconn, write=True)


async def ready(pgconn: pq.abc.PGconn, write: bool = False) -> None:
    """Wait until the connection's socket is readable (or writable)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    fileno = pgconn.socket
    add, remove = (
        (loop.add_writer, loop.remove_writer) if write else (loop.add_reader, loop.remove_reader)
    )

    def wake() -> None:
        if not done.done():
            done.set_result(None)

    add(fileno, wake)
    try:
        await done
    finally:
        remove(fileno)
