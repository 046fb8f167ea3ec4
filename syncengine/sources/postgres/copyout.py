"""``COPY … TO STDOUT`` read in bulk, straight from libpq.

libpq hands out COPY data one row per ``PQgetCopyData`` call. psycopg's ``Copy.read()`` wraps
each call in a generator and a wait, about 35 µs per row: a million-row backfill spent more time
there than the server spent producing the rows. Here one loop takes every row libpq has already
buffered (a C call each) and waits on the socket only when the buffer is empty, so the cost per
row is the C call. The protocol steps are the ones psycopg performs (send, flush, COPY_OUT
result, data, final result), on the connection's lock so nothing else interleaves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
from psycopg import errors, pq, sql


async def copy_out(
    conn: psycopg.AsyncConnection, query: sql.Composable, alive: Callable[[], None]
) -> bytes:
    """All data of the ``COPY … TO STDOUT`` ``query``; ``alive()`` is called whenever data
    arrived (deadline by progress, see :mod:`.deadline`)."""
    pgconn = conn.pgconn
    encoding = conn.info.encoding
    async with conn.lock:
        pgconn.send_query(query.as_bytes(conn))
        while pgconn.flush():
            await _ready(pgconn, write=True)
        first = await _next_result(pgconn)
        if first is None or first.status != pq.ExecStatus.COPY_OUT:
            await _drain(pgconn)
            if first is not None and first.status == pq.ExecStatus.FATAL_ERROR:
                raise errors.error_from_result(first, encoding=encoding)
            raise psycopg.ProgrammingError("copy_out needs a COPY … TO STDOUT statement")
        parts: list[bytes] = []
        while True:
            nbytes, data = pgconn.get_copy_data(1)
            if nbytes > 0:
                parts.append(bytes(data))
            elif nbytes == 0:  # nothing buffered: wait for the socket
                alive()
                await _ready(pgconn)
                pgconn.consume_input()
            elif nbytes == -1:
                break
            else:
                raise psycopg.OperationalError(pgconn.get_error_message(encoding))
        final = await _next_result(pgconn)
        await _drain(pgconn)
        if final is not None and final.status != pq.ExecStatus.COMMAND_OK:
            raise errors.error_from_result(final, encoding=encoding)
    return b"".join(parts)


async def _next_result(pgconn: pq.abc.PGconn) -> pq.abc.PGresult | None:
    while pgconn.is_busy():
        await _ready(pgconn)
        pgconn.consume_input()
    return pgconn.get_result()


async def _drain(pgconn: pq.abc.PGconn) -> None:
    """Read results until libpq says the command is over (the connection is idle again)."""
    while await _next_result(pgconn) is not None:
        pass


async def _ready(pgconn: pq.abc.PGconn, write: bool = False) -> None:
    """Wait until the connection's socket is readable (or writable)."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    fileno = pgconn.socket
    add, remove = (
        (loop.add_writer, loop.remove_writer) if write else (loop.add_reader, loop.remove_reader)
    )
    add(fileno, lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        remove(fileno)
