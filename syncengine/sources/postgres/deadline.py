"""Connections to the source whose round trips cannot hang forever.

A TCP connection can go silent without closing: a NAT or firewall dropped the flow, or a proxy
keeps its side open while the server behind it is gone. No FIN or RST arrives, so without a
deadline a query waits forever and so does the pipeline. Three layers, each for a case the
others miss:

* libpq options (:func:`libpq_defaults`), used only where the DSN does not set them:
  ``connect_timeout`` bounds connecting; ``keepalives_idle/_interval/_count`` make the kernel
  probe an idle connection and drop it when the peer is gone (the OS default waits two hours
  before the first probe); ``tcp_user_timeout`` drops it when data we sent stays
  unacknowledged (a query or status update into a dead path; the OS default retransmits for
  about 15 minutes). Neither helps when a middlebox keeps answering on the TCP level.
* A client-side deadline on every statement of an ordinary connection (:class:`BoundedCursor`,
  ``query_timeout``): catalog and admin queries, heartbeats, watermarks. It holds through any
  middlebox. Statements that may legitimately run long (planning snapshot chunks) opt in to
  :data:`BULK_FACTOR` times that (:func:`patient`); COPY reads are bounded by progress
  (:func:`progress`): data must keep arriving.
* The replication stream probes for its own silence (``ReplicationStream.check_alive``).

A missed deadline closes the connection and raises :class:`~syncengine.errors.SourceUnavailable`
(retriable): the supervisor reconnects and resumes from the checkpoint.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any, Self, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from syncengine.errors import SourceUnavailable

T = TypeVar("T")

#: statements that may legitimately run long get this many times ``query_timeout``
BULK_FACTOR = 10

LIBPQ_DEFAULTS: dict[str, int] = {
    "connect_timeout": 10,  # seconds
    # first probe after 30 s idle, then every 10 s; 3 unanswered probes drop the connection
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,  # ms that sent data may stay unacknowledged
}


def libpq_defaults(dsn: str, **defaults: int) -> dict[str, Any]:
    """The timeout options (:data:`LIBPQ_DEFAULTS`, updated by ``defaults``) that ``dsn``
    leaves unset (``connect_timeout`` also yields to ``PGCONNECT_TIMEOUT``): the user's
    settings always win."""
    given = set(conninfo_to_dict(dsn))
    if os.environ.get("PGCONNECT_TIMEOUT"):
        given.add("connect_timeout")
    wanted = {**LIBPQ_DEFAULTS, **defaults}
    return {k: v for k, v in wanted.items() if k not in given}


class SourceConnection(psycopg.AsyncConnection[Any]):
    """A psycopg connection that knows its statement deadline (None: unbounded)."""

    query_timeout: float | None = None


async def connect(
    dsn: str, query_timeout: float | None, defaults: dict[str, int] | None = None, **params: Any
) -> SourceConnection:
    """Connect with :func:`libpq_defaults` (``defaults`` adjusts them) and ``params`` (passed
    as given); statements on the connection are bounded by ``query_timeout``."""
    options = {**libpq_defaults(dsn, **(defaults or {})), **params}
    conn = await SourceConnection.connect(dsn, cursor_factory=BoundedCursor, **options)
    conn.query_timeout = query_timeout
    return conn


@asynccontextmanager
async def bounded(
    conn: psycopg.AsyncConnection, seconds: float, doing: str
) -> AsyncIterator[asyncio.Timeout]:
    """Run the block within ``seconds``; past that, close ``conn`` (it is presumed lost, so
    nothing may reuse it) and raise SourceUnavailable. Yields the asyncio timeout, which
    :func:`progress` moves forward."""
    limit = asyncio.timeout(seconds)
    try:
        async with limit:
            yield limit
    except TimeoutError:
        if not limit.expired():
            raise
        await conn.close()
        raise SourceUnavailable(
            f"postgres source: {doing}: no answer within {seconds:g} s; the connection is "
            "presumed lost (a silent network path), reconnecting",
            hint="raise source.query_timeout if the source is legitimately this slow",
        ) from None


class Progress:
    """``alive()``: data arrived (moves the deadline of a bulk read). :meth:`waiting`: the
    read waits on its consumer, not on the server, so the deadline is off meanwhile."""

    def __init__(self, limit: asyncio.Timeout | None, seconds: float) -> None:
        self._limit = limit
        self._seconds = seconds
        self._moved = asyncio.get_running_loop().time()

    def __call__(self) -> None:  # called per row: move the timer only every tenth of the limit
        if self._limit is None:
            return
        now = asyncio.get_running_loop().time()
        if now - self._moved > self._seconds / 10:
            self._moved = now
            self._limit.reschedule(now + self._seconds)

    async def waiting(self, awaitable: Awaitable[T]) -> T:
        """``await awaitable`` with the deadline off; it restarts in full afterwards."""
        if self._limit is None:
            return await awaitable
        self._limit.reschedule(None)
        try:
            return await awaitable
        finally:
            self._moved = now = asyncio.get_running_loop().time()
            self._limit.reschedule(now + self._seconds)


@asynccontextmanager
async def progress(conn: psycopg.AsyncConnection, doing: str) -> AsyncIterator[Progress]:
    """Bound a bulk read by progress: yields ``alive()``, to call whenever data arrived; the
    read fails once ``BULK_FACTOR × query_timeout`` pass without a call (or before the first).
    Unbounded on connections without a ``query_timeout``."""
    seconds = _limit(conn, BULK_FACTOR)
    if seconds is None:
        yield Progress(None, 0.0)
        return
    async with bounded(conn, seconds, doing) as limit:
        yield Progress(limit, seconds)


def patient(cursor: psycopg.AsyncCursor[Any]) -> psycopg.AsyncCursor[Any]:
    """The cursor, allowed ``BULK_FACTOR`` times the statement deadline (a long statement)."""
    if isinstance(cursor, BoundedCursor):
        cursor.factor = BULK_FACTOR
    return cursor


class BoundedCursor(psycopg.AsyncCursor[Any]):
    """``execute`` within the connection's ``query_timeout`` (× ``factor``)."""

    factor: float = 1

    async def execute(
        self,
        query: Any,
        params: Any = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> Self:
        seconds = _limit(self.connection, self.factor)
        if seconds is None:
            await super().execute(query, params, prepare=prepare, binary=binary)
            return self
        async with bounded(self.connection, seconds, _summary(query, self.connection)):
            await super().execute(query, params, prepare=prepare, binary=binary)
        return self


def _limit(conn: psycopg.AsyncConnection, factor: float) -> float | None:
    seconds = getattr(conn, "query_timeout", None)
    return None if seconds is None else seconds * factor


def _summary(query: Any, conn: psycopg.AsyncConnection) -> str:
    """The statement's start, to say which one went unanswered (our own SQL, no secrets)."""
    if isinstance(query, sql.Composable):
        try:
            query = query.as_string(conn)
        except Exception:  # noqa: BLE001 - only for a message
            return "a statement"
    text = " ".join(str(query).split())
    return text if len(text) <= 60 else text[:57] + "…"
