"""The socket loop of a START_REPLICATION stream: COPY_BOTH over psycopg's low-level pgconn.

psycopg (>= 3.3) lets ``cursor.execute("START_REPLICATION …")`` return with the connection in
COPY_BOTH; from there the connection's ``pgconn`` carries the traffic: ``get_copy_data(1)``
(non-blocking) for server messages, ``put_copy_data`` + ``flush`` for status updates. When no
message is buffered we wait on the socket with ``loop.add_reader`` — no busy loop. The
protocol bytes themselves are parsed by :mod:`.wire`.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import pq

from syncengine.errors import SourceUnavailable
from syncengine.sources.postgres.pgerrors import map_error
from syncengine.sources.postgres.wire import (
    Keepalive,
    XLogData,
    parse_copy_data,
    standby_status,
)

if TYPE_CHECKING:  # annotations only: this module stays free of Arrow
    from syncengine.changes import ChangeBatch
    from syncengine.sources.postgres.assembler import Taken

#: an XLogData's WAL start (its first header field, after the 'w')
_XLOG_START = struct.Struct("!Q").unpack_from


class ReplicationStream:
    """One started replication stream; ``flushed`` is what the server may discard."""

    def __init__(self, conn: psycopg.AsyncConnection, start: int, status_interval: float = 10.0):
        self.conn = conn
        self.pgconn = conn.pgconn
        self.received = start
        #: never beyond what the runtime acknowledged
        self.flushed = start
        self.status_interval = status_interval
        self.last_status = 0.0
        #: when a message last arrived, and when we last asked the server to answer at once
        self.last_heard = time.monotonic()
        self.last_probe = 0.0
        #: a probe unanswered this long means the connection went silent (half-open: a
        #: dropped NAT or firewall flow sends no FIN/RST, so no error would ever come)
        self.silence_limit = 3 * status_interval
        #: the loop watching the socket between waits, and the wait it would wake
        self._watching: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[bool] | None = None
        self._fd = -1
        #: the consumer waits for rows: cut the group at the next commit (see want())
        self.wanted = False

    async def read(self, timeout: float) -> bytes | Keepalive | None:
        """The next server message (an ``XLogData``'s payload as ``bytes``), or None after
        ``timeout`` seconds without one."""
        deadline = time.monotonic() + max(timeout, 0.0)
        looked = False
        while True:
            message = self.read_nowait()
            if message is not None:
                self.last_heard = time.monotonic()
                return message
            left = deadline - time.monotonic()
            if left <= 0 and looked:
                return None
            if left > 0 and not await self._readable(left):
                return None
            # readable, or out of time without having looked at the socket yet (the caller
            # was busy): take what arrived, so None always means "nothing there"
            looked = True
            try:
                self.pgconn.consume_input()
            except psycopg.Error as exc:
                raise map_error(exc, "reading the replication stream") from exc

    def read_nowait(self) -> bytes | Keepalive | None:
        """A message libpq already has, or None; an ``XLogData`` (one pgoutput message) as
        its payload alone: nothing downstream reads its header, and a tuple made per change
        to carry it cost as much as copying the payload. ``last_heard`` is set by
        :meth:`read`, once per burst: a clock read per message cost more than the message's
        own parsing."""
        try:
            size, data = self.pgconn.get_copy_data(1)
        except psycopg.Error as exc:
            raise map_error(exc, "reading the replication stream") from exc
        return self._message(size, data)

    def read_rows(
        self, take: Callable[[Callable[[int], Any]], Taken]
    ) -> tuple[Sequence[ChangeBatch], bytes | Keepalive | None]:
        """``take`` (:meth:`.assembler.ChangeAssembler.take_rows`) given the connection's
        reads: the batches it cut, and the message it stopped at parsed as
        :meth:`read_nowait` would."""
        try:
            batches, size, data, last = take(self.pgconn.get_copy_data)
        except psycopg.Error as exc:
            raise map_error(exc, "reading the replication stream") from exc
        if last is not None:
            start = _XLOG_START(last, 1)[0]
            if start > self.received:
                self.received = start
        return batches, self._message(size, data)

    def _message(self, size: int, data: Any) -> bytes | Keepalive | None:
        if size > 25 and data[0] == 0x77:  # 'w', nearly every message: parsed inline
            start = _XLOG_START(data, 1)[0]
            if start > self.received:
                self.received = start
            return bytes(data[25:])
        if size > 0:
            message = parse_copy_data(data)
            if isinstance(message, XLogData):
                if message.start > self.received:
                    self.received = message.start
                return message.payload
            if message.reply:
                self.send_status()
            return message
        if size < 0:
            raise self._ended()
        return None

    async def _readable(self, timeout: float) -> bool:
        """Wait until the socket is readable or ``timeout`` passes.

        A plain future plus ``call_later`` rather than ``asyncio.wait_for``: on Python 3.11
        ``wait_for`` can swallow a cancellation that races with the socket becoming readable,
        and a reader task would then never stop. The socket stays watched from one wait to
        the next (a drain waits once per burst, often thousands of times a second, and
        registering and unregistering the reader each time was a third of a decoding
        process's CPU); it is unwatched when it turns readable while nobody waits (the
        selector is level-triggered: it would fire on every turn of the loop) and by
        :meth:`stop_watching`, which the owner calls before closing the connection.
        """
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[bool] = loop.create_future()
        self._waiter = ready
        if self._watching is None:
            self._fd = self.pgconn.socket
            loop.add_reader(self._fd, self._on_readable)
            self._watching = loop
        timer = loop.call_later(timeout, _settle, ready, False)
        try:
            return await ready
        finally:
            timer.cancel()
            self._waiter = None

    def _on_readable(self) -> None:
        waiter = self._waiter
        if waiter is None:
            self.stop_watching()
        elif not waiter.done():
            waiter.set_result(True)

    def stop_watching(self) -> None:
        """Unregister the socket from the event loop (before the connection is closed)."""
        loop, self._watching = self._watching, None
        if loop is not None and not loop.is_closed():
            # the descriptor watched, not pgconn.socket: that raises once the connection broke
            loop.remove_reader(self._fd)

    def want(self) -> None:
        self.wanted = True

    def acknowledge(self, lsn: int) -> None:
        self.flushed = max(self.flushed, lsn)

    def send_status(self, reply: bool = False) -> None:
        """Tell the server what we received and what it may discard (non-blocking)."""
        status = standby_status(max(self.received, self.flushed), self.flushed, self.flushed, reply)
        try:
            self.pgconn.put_copy_data(status)
            self.pgconn.flush()
        except psycopg.Error as exc:
            raise map_error(exc, "sending a standby status update") from exc
        self.last_status = time.monotonic()
        if reply:
            self.last_probe = self.last_status

    def pace(self, sender_timeout: float) -> None:
        """Send status updates often enough for the walsender's ``wal_sender_timeout``
        (seconds; 0: none): it ends a connection that sent nothing for that long, also while
        the stream is paused and its keepalive requests go unread. A quarter of it, never
        more than the interval asked for; the silence limit is left as it was."""
        if sender_timeout > 0:
            self.status_interval = min(self.status_interval, max(sender_timeout / 4, 0.05))

    def status_due(self) -> bool:
        return time.monotonic() - self.last_status >= self.status_interval

    def _ended(self) -> Exception:
        result = self.pgconn.get_result()
        if result is not None and result.status == pq.ExecStatus.FATAL_ERROR:
            error = psycopg.errors.error_from_result(result, encoding="utf-8")
            return map_error(error, "replication stream")
        return map_error(psycopg.OperationalError("the server ended the stream"), "replication")

    def check_alive(self) -> None:
        """Raise (retriable) when a probe went unanswered for ``silence_limit`` seconds."""
        if self.last_probe and self.last_heard < self.last_probe:
            silent = time.monotonic() - self.last_probe
            if silent >= self.silence_limit:
                raise SourceUnavailable(
                    f"the replication connection is silent: no answer to a status probe for "
                    f"{silent:.0f} s; presumed lost, reconnecting"
                )


def _settle(ready: asyncio.Future[bool], value: bool) -> None:
    if not ready.done():
        ready.set_result(value)
