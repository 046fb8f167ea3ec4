"""PostgresSource: the :class:`~syncengine.sources.base.ChangeSource` for Postgres.

``mode: cdc`` streams a logical replication slot (``syncengine_<pipeline>``) through
:mod:`.streaming` and snapshots through :mod:`.snapshot`; ``mode: incremental`` polls a cursor
column through :mod:`.incremental`. Positions are ``changes.lsn_to_pos`` strings (incremental
mode: see that module).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Protocol

import psycopg
import pyarrow as pa

from syncengine.changes import ChangeBatch, lsn_to_pos, pos_to_lsn
from syncengine.config.models import BatchConfig, PostgresSourceConfig
from syncengine.errors import HISTORY_LOST_HINT, FatalError, HistoryLost
from syncengine.names import QualifiedName, canonical
from syncengine.runtime.phases import PhaseClock
from syncengine.sources.base import RowFilters, SourceLag, TableInfo, no_row_filters
from syncengine.sources.postgres import (
    admin,
    decodeproc,
    decodespawn,
    incremental,
    moved,
    tablesnap,
    usertypes,
)
from syncengine.sources.postgres.assembler import ChangeAssembler
from syncengine.sources.postgres.chunks import table_shape
from syncengine.sources.postgres.columns import PgType
from syncengine.sources.postgres.connect import connect
from syncengine.sources.postgres.deletes import ensure_delete_publication
from syncengine.sources.postgres.enums import EnumLabels
from syncengine.sources.postgres.missing import MissingValues
from syncengine.sources.postgres.passthrough import BINARY_COPY, CopySink, closing
from syncengine.sources.postgres.pgerrors import map_error
from syncengine.sources.postgres.snapshot import Snapshotter, stored_position
from syncengine.sources.postgres.snapshot import scan as scan_table
from syncengine.sources.postgres.streaming import stream_changes
from syncengine.sources.postgres.wire import pg_time
from syncengine.state.protocols import SourceState

log = logging.getLogger("syncengine.sources.postgres")


class LiveStream(Protocol):
    """A running stream's acknowledgement side: :class:`.replication.ReplicationStream`, or
    :class:`.decodeproc.DecodeProcess` forwarding to the one in the decode process."""

    def acknowledge(self, lsn: int) -> None: ...

    def send_status(self, reply: bool = False) -> None: ...

    def want(self) -> None: ...


def position_lsn(position: str) -> int:
    """The LSN of a position string (row positions ``<lsn>.<n>`` count as their commit LSN)."""
    return pos_to_lsn(position.split(".")[0])


async def connect_source(
    config: PostgresSourceConfig, replication: bool = False
) -> psycopg.AsyncConnection:
    """A new connection to the configured source (see :func:`.connect.connect`)."""
    return await connect(config.dsn.get_secret_value(), config.query_timeout, replication)


class PostgresSource:
    """One pipeline's Postgres source. See the module docstring."""

    def __init__(
        self,
        pipeline_name: str,
        config: PostgresSourceConfig,
        state: SourceState,
        batch: BatchConfig,
    ) -> None:
        self.pipeline = pipeline_name
        self.config = config
        self.state = state
        self.batch = batch
        self.slot = config.slot or admin.default_name(pipeline_name)
        self.publication = config.publication or admin.default_name(pipeline_name)
        self.tables_ = [canonical(t) for t in config.tables]
        if config.mode == "cdc":
            self.stream_name = f"slot:{self.slot}"
        else:
            self.stream_name = f"incremental:{pipeline_name}"
        #: the mappings' filters, pushed into snapshot reads (set by the runtime)
        self.row_filters: RowFilters = no_row_filters
        #: where the stream adds its ``decode`` seconds (set by the runtime)
        self.phases: PhaseClock | None = None
        self._conn: psycopg.AsyncConnection | None = None
        #: the connection of :meth:`snapshot_reads` (its own, opened at first use), and
        #: whether a ``snapshot_reads`` block is reading on it now
        self._reads: psycopg.AsyncConnection | None = None
        self._in_snapshot = False
        self.keys: dict[str, tuple[str, ...]] = {}
        #: each configured table's relation OID when the stream started: a change of another
        #: relation under its name is left out (:meth:`_replaced`)
        self._relids: dict[str, int] = {}
        #: where acknowledgements go while a stream runs (in this process or the decode one)
        self._live: LiveStream | None = None
        #: what decodes the running stream: takes the keys and types of tables added to it
        self._decoder: ChangeAssembler | decodeproc.DecodeProcess | None = None
        self._acked: int | None = None
        #: acknowledged after the stream ended, not yet confirmed on the slot (see :meth:`close`)
        self._unconfirmed = False
        #: (end LSN, commit time) of the newest commit the stream has read
        self._last_commit: tuple[int, float] | None = None
        self._wal_warnings = admin.RetainedWalWarnings()
        #: set by the runtime for the next snapshot only: where chunks that need no decoding
        #: go as binary COPY (see :mod:`.passthrough`); the snapshot closes it
        self.chunk_sink: CopySink | None = None

    # -- connections ----------------------------------------------------------------------

    async def connect(self, replication: bool = False) -> psycopg.AsyncConnection:
        return await connect_source(self.config, replication)

    async def catalog(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await self.connect()
        return self._conn

    async def open(self) -> None:
        conn = await self.catalog()
        try:
            await self._check(conn, self.config)
            self.keys = await admin.table_keys(conn, self.tables_)
            if self.config.mode == "cdc":
                # before any slot: decoding sees a publication only in WAL written after it
                await self._publish(conn)
        except psycopg.Error as exc:
            raise map_error(exc, "opening") from exc

    @staticmethod
    async def _check(conn: psycopg.AsyncConnection, config: PostgresSourceConfig) -> None:
        problems = await admin.check(conn, config)
        if problems:
            raise FatalError(
                "postgres source cannot capture: " + "; ".join(problems),
                hint="fix the settings named above, then rerun",
            )

    async def _publish(self, conn: psycopg.AsyncConnection) -> None:
        """The publications follow ``tables:``: the engine's own one exactly (a removed table
        leaves it), and the deletes one a resumed snapshot reads the deletes since its
        position through."""
        owned = self.config.publication is None
        await admin.ensure_publication(conn, self.publication, self.tables_, exact=owned)
        await ensure_delete_publication(self, conn)

    async def close(self) -> None:
        if self._unconfirmed and self._acked:
            # once for every acknowledgement made after the stream ended: the server decodes
            # the slot's WAL again from its restart point for each pg_replication_slot_advance
            # (0.1-0.2 s of its CPU apiece after a drain), which is why acknowledge defers it
            await admin.advance_slot(await self.catalog(), self.slot, self._acked)
        self._unconfirmed = False
        for conn in (self._conn, self._reads):
            if conn is not None:
                await conn.close()
        self._conn = self._reads = None

    @contextlib.asynccontextmanager
    async def snapshot_reads(self) -> AsyncIterator[None]:
        """:meth:`current_rows` and :meth:`sibling_versions` inside the block read one
        snapshot of the source (:func:`.current.one_snapshot`), on a connection of their own
        (the catalog one serves the stream meanwhile)."""
        from syncengine.sources.postgres.current import one_snapshot

        if self._reads is None or self._reads.closed:
            self._reads = await self.connect()
        try:
            async with one_snapshot(self._reads):
                self._in_snapshot = True
                yield
        except psycopg.Error as exc:
            raise map_error(exc, "reading the source in one snapshot") from exc
        finally:
            self._in_snapshot = False

    async def _reader(self) -> psycopg.AsyncConnection:
        """The connection a read by key uses: a :meth:`snapshot_reads` block's, else the
        catalog one."""
        if self._in_snapshot and self._reads is not None:
            return self._reads
        return await self.catalog()

    async def tables(self) -> list[TableInfo]:
        conn = await self.catalog()
        if not self.keys:
            self.keys = await admin.table_keys(conn, self.tables_)
        infos = []
        for table in self.tables_:
            name = QualifiedName.parse(table)
            row = await (
                await conn.execute(
                    "SELECT c.reltuples::bigint FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = %s",
                    (name.schema, name.name),
                )
            ).fetchone()
            estimate = int(row[0]) if row and row[0] >= 0 else None
            key = self.keys.get(table, ())
            shape = await table_shape(conn, table, key)
            schema = pa.schema(
                [t.field(c) for c, t in zip(shape.columns, shape.types, strict=True)]
            )
            infos.append(TableInfo(table, key, schema, estimate))
        return infos

    async def _relation_ids(self) -> dict[str, int]:
        return {t: int(oid) for t, oid in (await self.table_identities()).items()}

    async def table_identities(self) -> dict[str, str]:
        """Each configured table's relation OID, as text (a table that does not exist now is
        left out). A publication holds a table by OID: one dropped and created again, or
        renamed away and replaced, is another relation under the same name, which the stream
        did not capture (:mod:`syncengine.runtime.captured`)."""
        conn = await self.catalog()
        try:
            cur = await conn.execute(
                "SELECT t, to_regclass(t)::oid::text FROM unnest(%s::text[]) AS t",
                (list(self.tables_),),
            )
            return {t: oid for t, oid in await cur.fetchall() if oid is not None}
        except psycopg.Error as exc:
            raise map_error(exc, "reading the tables' identities") from exc

    # -- streaming ------------------------------------------------------------------------

    def stream(self, start: str | None, until: str | None = None) -> AsyncIterator[ChangeBatch]:
        if self.config.mode == "incremental":
            return incremental.poll(self, start, until)
        return self._stream(start, until)

    async def _check_history(self, conn: psycopg.AsyncConnection, start: str) -> None:
        """The slot still holds every change after ``start``, or :class:`HistoryLost`.

        Streaming from before the slot's confirmed position silently starts at that position
        instead (Postgres skips what it was told was done), so a slot ahead of the checkpoint
        means the changes between went to someone else: a target restored from an older
        backup, or the slot advanced or made anew by hand. An invalidated slot
        (``max_slot_wal_keep_size``) can no longer be read at all."""
        if await admin.slot_status(conn, self.slot) == admin.LOST:
            raise HistoryLost(
                f"replication slot {self.slot} was invalidated by the server (it held more WAL "
                f"than max_slot_wal_keep_size allows), so changes after {start} are lost",
                hint=HISTORY_LOST_HINT,
            )
        confirmed = await admin.confirmed_lsn(conn, self.slot)
        if confirmed is not None and confirmed > position_lsn(start):
            raise HistoryLost(
                f"replication slot {self.slot} has confirmed {lsn_to_pos(confirmed)}, past this "
                f"pipeline's checkpoint {start}: the changes between are no longer in it (a "
                "target restored from an older backup, or the slot advanced or made anew by hand)",
                hint=HISTORY_LOST_HINT,
            )

    async def _stream(self, start: str | None, until: str | None) -> AsyncIterator[ChangeBatch]:
        conn = await self.catalog()
        # read after the position: a key changed after it is seen in the stream
        keys_at = await admin.current_lsn(conn)
        self.keys = await admin.table_keys(conn, self.tables_)
        if not await admin.slot_exists(conn, self.slot):
            if start:
                raise HistoryLost(
                    f"replication slot {self.slot} is gone, so changes after {start} are lost",
                    hint=HISTORY_LOST_HINT,
                )
            await self._create_slot_without_snapshot()
        elif start:
            await self._check_history(conn, start)
        begin = position_lsn(start) if start else 0
        self._acked = begin or None
        self._unconfirmed = False  # the new stream confirms from its start on
        oids = await usertypes.column_type_oids(conn, self.tables_)
        typedefs = await usertypes.definitions(conn, oids)
        end = position_lsn(until) if until else None

        def track(stream: LiveStream | None) -> None:
            self._live = stream

        def committed(end_lsn: int, at: float) -> None:
            self._last_commit = (end_lsn, at)

        column_types: Callable[[int], dict[str, PgType]]
        child: decodeproc.DecodeProcess | None = None
        if decodespawn.in_process():
            assembler = ChangeAssembler(
                self.batch.max_rows,
                self.keys,
                self.tables_[0],
                typedefs,
                frozenset(self.config.own_origins),
                frozenset(self.config.ignore_origins),
            )
            assembler.keys_at = keys_at
            column_types = assembler.column_types
            batches = stream_changes(
                self.connect,
                self.slot,
                self.publication,
                begin,
                end,
                assembler,
                self.batch.max_wait,
                self.config.heartbeat,
                track,
                lambda c: committed(c.end_lsn, pg_time(c.commit_time).timestamp()),
                self.phases,
            )
        else:
            child = decodeproc.DecodeProcess(
                {
                    "dsn": self.config.dsn.get_secret_value(),
                    "query_timeout": self.config.query_timeout,
                    "own_origins": frozenset(self.config.own_origins),
                    "ignore_origins": frozenset(self.config.ignore_origins),
                    "slot": self.slot,
                    "publication": self.publication,
                    "start": begin,
                    "until": end,
                    "max_rows": self.batch.max_rows,
                    "keys": self.keys,
                    "keys_at": keys_at,
                    "idle_table": self.tables_[0],
                    "typedefs": typedefs,
                    "max_wait": self.batch.max_wait,
                    "heartbeat": self.config.heartbeat,
                },
                self.phases,
            )
            column_types = child.column_types
            batches = child.batches(track, lambda c: committed(*c))
        self._decoder = child or assembler
        self._relids = await self._relation_ids()
        defaults = MissingValues()
        enums = EnumLabels()
        try:
            async for batch in batches:
                oid = batch.meta.get("relation")
                if isinstance(oid, int) and oid != self._relids.get(batch.table, oid):
                    yield self._replaced(batch)
                    continue
                if isinstance(oid, int) and batch.unsent_columns:
                    try:
                        types = column_types(oid)
                        batch = await moved.fill_moved(await self.catalog(), batch, types)
                    except psycopg.Error as exc:
                        raise map_error(exc, "reading rows whose key changed") from exc
                try:
                    batch = await defaults.annotate(await self.catalog(), batch)
                    batch = await enums.check(await self.catalog(), batch)
                except psycopg.Error as exc:
                    raise map_error(exc, "reading column definitions") from exc
                yield batch
        finally:
            self._decoder = None
        if child is not None and self._acked:
            # an acknowledgement may have reached the decode process after its stream closed
            self._unconfirmed = True

    def _replaced(self, batch: ChangeBatch) -> ChangeBatch:
        """A batch of a relation that held a configured table's name when it was written and
        no longer does (dropped, or renamed away, and another table created under the name):
        its rows are left out (the table's copy, asked for at the start, replaces what the
        target held: :mod:`syncengine.runtime.captured`); its positions still move the
        stream on."""
        log.info(
            "%s: %d change(s) of %s's earlier table (OID %s) left out",
            self.pipeline, batch.data.num_rows, batch.table, batch.meta.get("relation"),
        )  # fmt: skip
        return replace(batch, data=batch.data.slice(0, 0))

    async def add_tables(self, config: PostgresSourceConfig) -> list[str]:
        """Capture the tables ``config`` lists that the running stream does not, without
        stopping it (a reload that only adds tables); returns them. The decoder learns their
        keys and types first, then they join the publications: their changes are streamed
        from the ALTER's commit on. Raises :class:`FatalError` when no stream runs or the
        tables cannot be captured (the caller restarts the pipeline instead)."""
        decoder = self._decoder
        if self.config.mode != "cdc" or decoder is None:
            raise FatalError(f"{self.pipeline}: no stream is running to add tables to")
        added = [t for t in (canonical(n) for n in config.tables) if t not in self.tables_]
        if not added:
            return []
        try:
            conn = await self.catalog()
            await self._check(conn, config)
            keys = await admin.table_keys(conn, added)
            typedefs = await usertypes.definitions(
                conn, await usertypes.column_type_oids(conn, added)
            )
            if isinstance(decoder, ChangeAssembler):
                decoder.add_tables(keys, typedefs)
            else:
                await decoder.add_tables(keys, typedefs)
            self.keys.update(keys)
            self.config, self.tables_ = config, [*self.tables_, *added]
            await self._publish(conn)
            self._relids = await self._relation_ids()
        except psycopg.Error as exc:
            raise map_error(exc, "adding tables") from exc
        return added

    async def _create_slot_without_snapshot(self) -> None:
        repl = await self.connect(replication=True)
        try:
            await admin.create_slot(repl, self.slot, export=False)
        except psycopg.Error as exc:
            raise map_error(exc, f"creating slot {self.slot}") from exc
        finally:
            await repl.close()

    def want(self) -> None:
        """The applier is idle: the stream hands over what is committed at its next commit
        instead of waiting for ``max_wait`` (:func:`.streaming.stream_changes`)."""
        if self._live is not None:
            self._live.want()

    async def acknowledge(self, position: str) -> None:
        if self.config.mode != "cdc":
            return
        lsn = position_lsn(position)
        self._acked = max(self._acked or 0, lsn)
        if self._live is not None:
            self._live.acknowledge(lsn)
            self._live.send_status()
        else:  # the stream already ended (sync --once): the idle slot is moved by close()
            self._unconfirmed = True

    async def current_position(self) -> str:
        if self.config.mode == "incremental":
            return await incremental.current_position(self)
        return lsn_to_pos(await admin.current_lsn(await self.catalog()))

    async def lag(self, acknowledged: str | None) -> SourceLag:
        if self.config.mode != "cdc":
            return SourceLag(acknowledged)
        age = None
        if self._last_commit is not None:
            end, at = self._last_commit
            done = position_lsn(acknowledged) if acknowledged else self._acked or 0
            # caught up: nothing read is unacknowledged; otherwise the newest commit's age
            age = 0.0 if done >= end else max(time.time() - at, 0.0)
        lag = await admin.slot_lag(
            await self.catalog(),
            self.slot,
            acknowledged,
            self.config.max_retained_wal_mb,
            age,
        )
        self._wal_warnings.note(lag)
        return lag

    async def current_rows(
        self, table: str, key: tuple[str, ...], schema: pa.Schema, keys: pa.Table
    ) -> pa.Table:
        """What ``keys`` of ``table`` hold now (:mod:`.current`; two-way ``prefer``)."""
        from syncengine.sources.postgres.current import current_rows

        try:
            return await current_rows(await self._reader(), table, key, schema, keys)
        except psycopg.Error as exc:
            raise map_error(exc, f"reading current rows of {table}") from exc

    async def sibling_versions(
        self,
        table: str,
        key: tuple[str, ...],
        keys: pa.Table,
        row_keys: list[str],
        sibling: tuple[str, Sequence[str]],
    ) -> tuple[pa.Table, pa.Table]:
        """Who last wrote ``keys`` and what ``sibling`` (versions name, origins) recorded for them
        (:func:`.current.sibling_versions`; two-way ``timestamp`` echoes)."""
        from syncengine.sources.postgres.current import sibling_versions

        try:
            conn = await self._reader()
            return await sibling_versions(conn, table, key, keys, row_keys, *sibling)
        except psycopg.Error as exc:
            raise map_error(exc, f"reading versions of {table}") from exc

    # -- snapshot -------------------------------------------------------------------------

    def snapshot(
        self,
        tables: Sequence[str] | None = None,
        where: str | None = None,
        parallel: int = 2,
    ) -> AsyncIterator[ChangeBatch]:
        sink, self.chunk_sink = self.chunk_sink, None
        batches = Snapshotter(self, sink).run(self.snapshot_tables(tables), where, parallel)
        return batches if sink is None else closing(batches, sink)

    def snapshot_tables(self, tables: Sequence[str] | None) -> list[str]:
        return [canonical(t) for t in tables] if tables else self.tables_

    # -- raw chunk passthrough (syncengine.passthrough.RawChunkExport) --------------------

    def raw_chunk_format(self) -> str | None:
        """Binary COPY chunks of the exported snapshot; ``incremental`` reads no chunks."""
        return BINARY_COPY if self.config.mode == "cdc" else None

    def use_chunk_sink(self, sink: CopySink) -> None:
        self.chunk_sink = sink

    async def snapshot_position(self) -> str | None:
        return stored_position(self)

    def scan(self, table: str, columns: Sequence[str] | None = None) -> AsyncIterator[ChangeBatch]:
        return scan_table(self, canonical(table), columns)

    def table_snapshot(
        self,
        table: str,
        where: str | None = None,
        parallel: int = 2,
        hold: tablesnap.Hold | None = None,
    ) -> AsyncIterator[ChangeBatch]:
        """One table's rows while the stream runs (see :mod:`.tablesnap`)."""
        return tablesnap.table_snapshot(self, canonical(table), where, parallel, hold)

    async def visible_position(self, required: bool = False) -> str | None:
        """Where a table sweep's deletes go (see :mod:`syncengine.runtime.sweep`)."""
        return await tablesnap.visible_position(self, required)
