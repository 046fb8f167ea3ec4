"""``COPY … TO STDOUT`` read in bulk, straight from libpq.

libpq hands out COPY data one row per ``PQgetCopyData`` call. psycopg's ``Copy.read()`` wraps
each call in a generator and a wait, about 35 µs per row: a million-row backfill spent more time
there than the server spent producing the rows. Here one loop takes every row libpq has already
buffered (a C call each) and waits on the socket only when the buffer is empty, so the cost per
row is the C call. The same loop can hand on pieces of about 1 MB instead of one result
(:func:`copy_out_into`: the binary passthrough of snapshot chunks). The protocol steps are the
ones psycopg performs (send, flush, COPY_OUT result, data, final result), on the connection's
lock so nothing else interleaves.

libpq reads at most what fits its input buffer (about 16 KB, ~90 rows of an 8-column table) per
``consume_input``, so a fast COPY drained by waiting on the socket after every refill pays a
future, a reader registration and an event-loop turn per 16 KB although the kernel already
holds the next bytes: 11,000 waits per million rows, a quarter of the loop's CPU. When the
buffer runs dry the loop therefore reads again directly, and waits only when that read brought
nothing or after :data:`DIRECT_READS` refills in a row (the wait is where the event loop runs
the other snapshot workers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import psycopg
from psycopg import errors, pq, sql

from syncengine.pglibpq import drain, next_result, ready, start_copy

#: refills read straight from the socket before the loop waits on it (and lets others run)
DIRECT_READS = 16


async def copy_out(
    conn: psycopg.AsyncConnection, query: sql.Composable, alive: Callable[[], None]
) -> bytes:
    """All data of the ``COPY … TO STDOUT`` ``query``; ``alive()`` is called whenever data
    arrived (deadline by progress, see :mod:`.deadline`)."""
    parts: list[bytes] = []

    async def keep(piece: bytes) -> None:
        parts.append(piece)

    await copy_out_into(conn, query, alive, keep, piece_bytes=None)
    return b"".join(parts)


async def copy_out_into(
    conn: psycopg.AsyncConnection,
    query: sql.Composable,
    alive: Callable[[], None],
    write: Callable[[bytes], Awaitable[None]],
    piece_bytes: int | None = 1 << 20,
    piece_rows: int | None = None,
) -> int:
    """Stream the data of the ``COPY … TO STDOUT`` ``query`` to ``write`` in pieces of about
    ``piece_bytes`` (None: one piece at the end), or of exactly ``piece_rows`` COPY data
    messages (rows: text and CSV COPY send one row per message, so every piece parses on its
    own); returns the number of COPY data messages.

    Passing bytes on instead of holding the whole result keeps memory at one piece, and a
    piece goes out as soon as libpq's buffer is empty (before waiting on the socket), so the
    receiver works while the server produces the next rows."""
    pgconn = conn.pgconn
    encoding = conn.info.encoding
    messages = 0
    async with conn.lock:
        await start_copy(
            conn,
            query.as_bytes(conn),
            pq.ExecStatus.COPY_OUT,
            "copy_out needs a COPY … TO STDOUT statement",
        )
        buffer = bytearray()
        limit = piece_bytes or 0
        cut = piece_rows or -1  # the message count at which the next piece is cut
        refills, refilled_at = 0, -1  # direct refills since the last wait; count at the last
        get = pgconn.get_copy_data
        while True:
            nbytes, data = get(1)
            if nbytes > 0:
                buffer += data
                messages += 1
                if messages == cut or (limit and len(buffer) >= limit):
                    await write(bytes(buffer))
                    buffer.clear()
                    if piece_rows:
                        cut = messages + piece_rows
                    alive()
            elif nbytes == 0:
                if refills < DIRECT_READS and refilled_at != messages:
                    # the last refill brought rows: the kernel likely holds more already
                    refills, refilled_at = refills + 1, messages
                    pgconn.consume_input()
                    continue
                # nothing buffered: hand on what we have, wait for the socket
                refills = 0
                if limit and len(buffer) >= limit // 16:
                    await write(bytes(buffer))
                    buffer.clear()
                alive()
                await ready(pgconn)
                pgconn.consume_input()
            elif nbytes == -1:
                break
            else:
                raise psycopg.OperationalError(pgconn.get_error_message(encoding))
        final = await next_result(pgconn)
        await drain(pgconn)
        if final is not None and final.status != pq.ExecStatus.COMMAND_OK:
            raise errors.error_from_result(final, encoding=encoding)
        if buffer:
            await write(bytes(buffer))
    return messages
