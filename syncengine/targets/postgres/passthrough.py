"""The target half of the snapshot passthrough: binary COPY chunks committed with their mark.

A snapshot chunk whose rows need no mapping (see :mod:`syncengine.runtime.passthrough`) arrives
as the source's own ``COPY … TO STDOUT (FORMAT binary)`` data and goes into the table with
``COPY … FROM STDIN (FORMAT binary)``, unread: binary COPY is exact for every built-in type
(numeric of any precision, arrays, jsonb, intervals, infinities) where the decoded path needs an
Arrow form for each value. One transaction per chunk holds its rows and its done-mark in
``_syncengine.chunks``, so a resumed snapshot skips exactly the chunks whose rows committed.

Binary data is only portable between columns of the same type: built-in types have the same
OID in every cluster, and ``array_recv``/``record_recv`` check element OIDs, so a table is taken
only when each source column has a target column of the same built-in type OID and typmod
(user-defined types — enums, domains, extension types — have cluster-local OIDs and stay on the
decoded path). A row the target refuses (a constraint, a key it already holds) rolls the chunk
back and the caller reads it the ordinary way, which bisects bad rows out to dead letters.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from psycopg import errors, pq, sql

from syncengine import pgsession
from syncengine.config.models import PostgresTargetConfig
from syncengine.passthrough import Feed, Write
from syncengine.pglibpq import drain, flush, next_result, ready, start_copy
from syncengine.sources.postgres.chunks import TableShape
from syncengine.state.base import Chunk
from syncengine.state.targetdb import TargetSnapshotProgress
from syncengine.targets.faults import fault_point
from syncengine.targets.postgres import epochs
from syncengine.targets.postgres.errors import first_line, is_record_error, translate
from syncengine.targets.postgres.state import PostgresTargetState

log = logging.getLogger("syncengine.targets.postgres")

#: OIDs below this are assigned by initdb: the same built-in type in every cluster
FIRST_NORMAL_OID = 16384

T = TypeVar("T")


@dataclass(frozen=True)
class PassTable:
    """A target table that can take binary chunks: its columns' (type OID, typmod)."""

    schema: str
    name: str
    columns: dict[str, tuple[int, int]]

    def refusal(self, shape: TableShape) -> str | None:
        """Why ``shape``'s binary rows cannot go into this table (None: they can)."""
        for column, kind in zip(shape.columns, shape.types, strict=True):
            found = self.columns.get(column)
            if kind.generated:  # not copied: generated here too, or a plain column to fill
                if found is not None:
                    return f"column {column} is generated at the source only"
                continue
            if found is None:
                return f"target has no writable column {column}"
            if kind.oid >= FIRST_NORMAL_OID:
                return f"column {column} has a user-defined type ({kind.name})"
            if found != (kind.oid, kind.typmod):
                return f"column {column} has another type at the target"
        return None


class BinaryCopySink:
    """A :class:`~syncengine.passthrough.ChunkSink` of the Postgres source's binary COPY
    chunks (:data:`~syncengine.sources.postgres.passthrough.BINARY_COPY`) for one pipeline's
    Postgres target. Each concurrent chunk gets its own connection (kept for the next one)."""

    def __init__(
        self, pipeline: str, config: PostgresTargetConfig, tables: dict[str, PassTable]
    ) -> None:
        self.pipeline = pipeline
        self.config = config
        self.tables = tables
        #: the chunks' done-marks in the target database, committed with their rows
        self.marks: TargetSnapshotProgress[psycopg.AsyncConnection] = PostgresTargetState(pipeline)
        self._idle: list[psycopg.AsyncConnection] = []
        #: cluster mode: the fencing epoch each chunk's commit checks (epochs.py)
        self.epoch: int | None = None

    @classmethod
    async def open(
        cls,
        pipeline: str,
        config: PostgresTargetConfig,
        conn: psycopg.AsyncConnection,
        tables: dict[str, tuple[str, str]],
    ) -> BinaryCopySink:
        """``tables``: source table → (schema, table) of its target, read from the catalog
        on ``conn`` (ordinary tables and partitioned ones; views and foreign tables take rows
        only through the decoded path)."""
        found: dict[str, PassTable] = {}
        for source, (schema, table) in tables.items():
            cur = await conn.execute(
                "SELECT a.attname, a.atttypid::int, a.atttypmod FROM pg_attribute a "
                "JOIN pg_class c ON c.oid = a.attrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p') "
                "AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''",
                (schema, table),
            )
            columns = {name: (oid, typmod) for name, oid, typmod in await cur.fetchall()}
            if columns:
                found[source] = PassTable(schema, table, columns)
        return cls(pipeline, config, found)

    def takes(self, shape: TableShape) -> bool:
        table = self.tables.get(shape.name)
        if table is None:
            return False
        reason = table.refusal(shape)
        if reason is not None:
            log.info("%s: %s is decoded, not passed through: %s", self.pipeline, shape.name, reason)
        return reason is None

    async def copy_chunk(
        self, shape: TableShape, chunk: Chunk, encoding: bytes, feed: Feed
    ) -> int | None:
        table = self.tables[shape.name]
        statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
            sql.Identifier(table.schema, table.name),
            sql.SQL(", ").join(map(sql.Identifier, shape.columns)),
        )
        conn = await self._acquire(encoding)
        failed: list[BaseException] = []

        async def source_rows(write: Write) -> None:
            try:
                await feed(write)
            except BaseException as exc:
                failed.append(exc)
                raise

        healthy = False
        try:
            async with conn.transaction():
                rows = await copy_in(conn, statement, source_rows)
                await self.marks.mark_done(conn, chunk, rows)
                fault_point("postgres.passthrough_before_commit")
                fence = epochs.chunk_fence.get()
                if fence is None and self.epoch is not None:
                    fence = (self.pipeline, self.epoch)
                if fence is not None:
                    await epochs.hold(conn, *fence)
            healthy = True
        except psycopg.Error as exc:
            if failed and exc is failed[0]:
                raise  # the source's error, reported as the source's
            if is_record_error(exc):
                healthy = conn.info.transaction_status == pq.TransactionStatus.IDLE
                log.info(
                    "%s: chunk %d of %s refused by the target (%s): read the ordinary way",
                    self.pipeline, chunk.chunk, shape.name, first_line(exc),
                )  # fmt: skip
                return None
            raise translate(exc, f"copying a snapshot chunk into {table.name}") from None
        finally:
            await self._release(conn, healthy)
        fault_point("postgres.passthrough_after_commit")
        return rows

    async def claim(self, fence: str, holder: str) -> int:
        """Claim a fence (a chunk's, :mod:`.epochs`) on an idle connection of the sink."""
        return await self._admin(lambda conn: epochs.claim(conn, fence, holder))

    async def done_chunks(self, tables: Sequence[str]) -> list[Chunk]:
        return await self._admin(lambda conn: self.marks.done_chunks(conn, tables))

    async def forget(self, tables: Sequence[str]) -> None:
        await self._admin(lambda conn: self.marks.forget_chunks(conn, tables))

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.close()

    # -- connections ----------------------------------------------------------------------

    async def _admin(self, work: Callable[[psycopg.AsyncConnection], Awaitable[T]]) -> T:
        """``work`` on an idle connection, outside a transaction (the marks' reads, resets)."""
        conn = await self._acquire(None)
        healthy = False
        try:
            done = await work(conn)
            healthy = True
            return done
        except psycopg.Error as exc:
            raise translate(exc, "reading or claiming snapshot chunk marks") from None
        finally:
            await self._release(conn, healthy)

    async def _acquire(self, encoding: bytes | None) -> psycopg.AsyncConnection:
        """An idle connection (or a new one) whose ``client_encoding`` is ``encoding``, the
        source session's: binary text values are sent in the client encoding."""
        try:
            conn = self._idle.pop() if self._idle else await self._connect()
            current = conn.pgconn.parameter_status(b"client_encoding")
            if encoding is not None and current != encoding:
                await conn.execute(
                    sql.SQL("SET client_encoding = {}").format(sql.Literal(encoding.decode()))
                )
        except psycopg.Error as exc:
            raise translate(exc, "connecting for snapshot chunks") from None
        return conn

    async def _connect(self) -> psycopg.AsyncConnection:
        conn = await psycopg.AsyncConnection.connect(
            self.config.dsn.get_secret_value(), autocommit=True
        )
        await pgsession.pin(conn)
        return conn

    async def _release(self, conn: psycopg.AsyncConnection, healthy: bool) -> None:
        if healthy and not conn.closed:
            self._idle.append(conn)
        else:
            with contextlib.suppress(Exception):
                await conn.close()


async def copy_in(conn: psycopg.AsyncConnection, statement: sql.Composable, feed: Feed) -> int:
    """Run the ``COPY … FROM STDIN`` ``statement`` with the data ``feed`` writes; the rows
    copied (the server's ``COPY n``). When the server refuses a row it ends the COPY at once:
    the rest of the data is discarded (``feed`` still runs to its end, so its source is left
    idle) and the server's error is raised. If ``feed`` fails, the COPY is aborted and its
    error raised."""
    pgconn = conn.pgconn
    encoding = conn.info.encoding
    async with conn.lock:
        await start_copy(
            conn,
            statement.as_bytes(conn),
            pq.ExecStatus.COPY_IN,
            "copy_in needs a COPY … FROM STDIN statement",
        )
        ended = False

        async def write(piece: bytes) -> None:
            nonlocal ended
            if ended:
                return
            while (sent := pgconn.put_copy_data(piece)) == 0:
                await ready(pgconn, write=True)
            if sent < 0:  # the server ended the COPY (a refused row): its error is the result
                ended = True
                return
            await flush(pgconn)

        try:
            await feed(write)
        except BaseException:
            with contextlib.suppress(Exception):
                if not ended:
                    pgconn.put_copy_end(b"the source read failed")
                    await flush(pgconn)
                await drain(pgconn)
            raise
        if not ended:
            while pgconn.put_copy_end(None) == 0:
                await ready(pgconn, write=True)
            await flush(pgconn)
        result = await next_result(pgconn)
        await drain(pgconn)
    if result is None:
        raise psycopg.OperationalError(pgconn.get_error_message(encoding))
    if result.status != pq.ExecStatus.COMMAND_OK:
        raise errors.error_from_result(result, encoding=encoding)
    return int(result.command_tuples or 0)
