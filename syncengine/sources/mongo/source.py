"""MongoDB change source: one database-level change stream, a parallel ``_id``-range snapshot.

PyMongo's native async API (``AsyncMongoClient``) only; motor is deprecated and not used.
Positions are described in :mod:`~syncengine.sources.mongo.positions`, event → row rules in
:mod:`~syncengine.sources.mongo.events`, the snapshot in :mod:`~syncengine.sources.mongo.snapshot`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC
from typing import Any

import pyarrow as pa
from bson import Timestamp
from pymongo import AsyncMongoClient
from pymongo.asynchronous.change_stream import AsyncChangeStream
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError
from pymongo.read_concern import ReadConcern

from syncengine.changes import ECHO, META_SCHEMA, ChangeBatch
from syncengine.codecs.bson_arrow import Decoded
from syncengine.config.models import BatchConfig, MongoSourceConfig
from syncengine.errors import FatalError, UsageError
from syncengine.mongoclient import CLOSE_SECONDS, close_stream, connect, read_deadline, tls_hint
from syncengine.runtime.phases import PhaseClock
from syncengine.sources.base import RowFilters, SourceLag, TableInfo, no_row_filters
from syncengine.sources.mongo.batches import rows_to_batch, snapshot_batch
from syncengine.sources.mongo.errors import map_error
from syncengine.sources.mongo.events import Boundaries, Row, event_rows, renamed_into, txn_of
from syncengine.sources.mongo.origins import Echoes, marker_match, tombstone_match
from syncengine.sources.mongo.positions import (
    as_datetime,
    event_position,
    parse_position,
    position_time,
    time_position,
    token_time,
)
from syncengine.sources.mongo.pushdown import snapshot_matches, stream_matches
from syncengine.sources.mongo.snapshot import (
    encode_bound,
    parse_where,
    plan_chunks,
    scan_chunks,
)
from syncengine.state.base import Chunk
from syncengine.state.protocols import SourceState

log = logging.getLogger("syncengine.sources.mongo")

#: seconds an empty poll may wait for new events while draining up to ``until``
DRAIN_WAIT = 0.05
#: seconds a collection's estimated count stays good enough to plan its snapshot chunks
COUNT_FRESH = 60.0


class MongoSource:
    """A :class:`~syncengine.sources.base.ChangeSource` over the configured collections."""

    def __init__(
        self,
        pipeline_name: str,
        config: MongoSourceConfig,
        state: SourceState,
        batch: BatchConfig,
    ) -> None:
        self.pipeline = pipeline_name
        self.config = config
        self.state = state
        self.batch = batch
        #: set by the runtime: leaves a re-snapshot request for a collection, returns its id
        self.copy_again: Callable[[str], int] | None = None
        self.stream_name = f"mongo:{config.database}"
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._events: AsyncDatabase[dict[str, Any]] | None = None
        self._closed = False
        #: the mappings' filters, pushed into the snapshot and the stream (set by the runtime)
        self.row_filters: RowFilters = no_row_filters
        #: collection -> ``$match`` over change events, ANDed into the stream's filter, on top
        #: of what ``row_filters`` pushes (an optional push-down, the mapping still filters)
        self.stream_filters: dict[str, dict[str, Any]] = {}
        self._pushed_stream: dict[str, dict[str, Any]] | None = None
        self._last_emitted: str | None = None
        self._caught_up = False
        #: where the stream adds its ``decode`` seconds (set by the runtime)
        self.phases: PhaseClock | None = None
        #: collection -> (monotonic time, estimated count) of the last :meth:`tables`, so a
        #: snapshot planned right after it does not count again (on servers without collection
        #: metadata the estimate is a scan)
        self._counts: dict[str, tuple[float, int]] = {}
        #: set by the runtime before a snapshot: the target holds no checkpoint of this stream,
        #: so once the snapshot is done the stream starts at its position (see :meth:`snapshot`)
        self.stream_starts_at_snapshot = False
        #: inside :meth:`snapshot_reads`: the read-only transaction its reads share
        self._snapshot_session: AsyncClientSession | None = None

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def resnapshot_on_history_lost(self) -> bool:
        """Whether :class:`~syncengine.errors.HistoryLost` from :meth:`stream` means re-copy."""
        return self.config.on_history_lost == "resnapshot"

    @property
    def current(self) -> bool:
        """Whether update and replace rows are documents as looked up now (``updateLookup``),
        rather than as they were at their event (post-images)."""
        return self.config.full_document == "updateLookup"

    @property
    def db(self) -> AsyncDatabase[dict[str, Any]]:
        """The source database; connects lazily (``scan`` for ``verify`` runs without ``open``)."""
        if self._client is None:
            uri = self.config.uri.get_secret_value()
            self._client = connect(
                uri,
                "source",
                **read_deadline(uri, self.config.query_timeout),
                tz_aware=True,
                tzinfo=UTC,
                uuidRepresentation="standard",
                datetime_conversion="DATETIME_AUTO",
                serverSelectionTimeoutMS=10_000,
            )
        return self._client[self.config.database]

    async def open(self) -> None:
        self._closed = False
        hello = await self._command("hello", "connecting to the source")
        if not hello.get("setName") and hello.get("msg") != "isdbgrid":
            raise FatalError(
                "the Mongo source is a standalone server; change streams need a replica set",
                hint="start mongod with --replSet and run rs.initiate()",
            )

    async def close(self) -> None:
        self._closed = True
        if self._client is not None:
            client, self._client, self._events = self._client, None, None
            await client.close()

    async def _command(self, name: str, what: str) -> dict[str, Any]:
        try:
            return await self.db.client.admin.command(name)
        except PyMongoError as exc:
            error = map_error(exc, what)
            error.message += tls_hint(self.config.uri.get_secret_value())
            raise error from exc

    async def tables(self) -> list[TableInfo]:
        out = []
        for name in self.config.collections:
            try:
                count = await self.db[name].estimated_document_count()
            except PyMongoError as exc:
                raise map_error(exc, f"counting {name}") from exc
            self._counts[name] = (time.monotonic(), count)
            out.append(TableInfo(name, ("_id",), None, count))
        return out

    def _recent_count(self, name: str) -> int | None:
        """The estimate :meth:`tables` read for ``name`` within :data:`COUNT_FRESH` seconds."""
        counted = self._counts.get(name)
        if counted is None or time.monotonic() - counted[0] > COUNT_FRESH:
            return None
        return counted[1]

    # -- positions ----------------------------------------------------------------------

    async def cluster_time(self) -> Timestamp:
        """The cluster time now (``operationTime`` of a ``hello``)."""
        reply = await self._command("hello", "reading the cluster time")
        ts = reply.get("operationTime") or (reply.get("$clusterTime") or {}).get("clusterTime")
        if not isinstance(ts, Timestamp):
            raise FatalError("the Mongo source reports no cluster time; is it a replica set?")
        return ts

    async def current_position(self) -> str:
        return time_position(await self.cluster_time())

    def want(self) -> None:
        """Nothing held to hand over early: a change-stream batch goes out as it is read."""

    async def acknowledge(self, position: str) -> None:
        """Nothing to release on the server: the oplog is not held for us."""

    async def lag(self, acknowledged: str | None) -> SourceLag:
        now = await self.cluster_time()
        if acknowledged is None:
            return SourceLag(None, details={"cluster_time": time_position(now)})
        idle = self._caught_up and acknowledged == self._last_emitted
        seconds = 0.0 if idle else max(0.0, float(now.time - position_time(acknowledged).time))
        return SourceLag(acknowledged, lag_seconds=seconds, details={"caught_up": idle})

    # -- stream -------------------------------------------------------------------------

    def _watch_pipeline(self) -> list[dict[str, Any]]:
        colls = list(self.config.collections)
        if self._pushed_stream is None:  # once: a reopened stream pushes the same
            self._pushed_stream = stream_matches(colls, self.row_filters)
        matches: dict[str, list[dict[str, Any]]] = {}
        for source in (self._pushed_stream, self.stream_filters):
            for coll, match in source.items():
                matches.setdefault(coll, []).append(match)
        plain = [c for c in colls if c not in matches]
        wanted: list[dict[str, Any]] = [{"ns.coll": {"$in": plain}}] if plain else []
        for coll, found in matches.items():
            wanted.append({"$and": [{"ns.coll": coll}, *found]})
        return [
            {
                "$match": {
                    "$or": [
                        *wanted,
                        *marker_match(self.config.own_origins),
                        *tombstone_match(self.config.own_origins, colls),
                        {"operationType": {"$in": ["dropDatabase", "invalidate"]}},
                        {"operationType": "rename", "to.coll": {"$in": colls}},
                    ]
                }
            }
        ]

    @property
    def _events_db(self) -> AsyncDatabase[dict[str, Any]]:
        """The source database as the stream and its look-ups read it: dates naive (UTC by
        BSON's definition, as the snapshot's raw batches decode them, see
        ``codecs.bson_arrow.DECODE_OPTIONS``). An aware date costs the driver a time-zone
        conversion per value, about a third of decoding a change event of the benchmark
        documents, and the batch's UTC timestamp column is the same either way."""
        if self._events is None:
            options = self.db.codec_options.with_options(tz_aware=False, tzinfo=None)
            self._events = self.db.with_options(codec_options=options)
        return self._events

    async def _open_stream(self, resume: dict[str, Any], draining: bool) -> AsyncChangeStream[Any]:
        # an idle poll must come back well within the read deadline (query_timeout)
        longest = min(1.0, self.config.query_timeout / 2)
        if draining:
            # up to ``until``: the first empty poll ends the drain, so waiting in it for
            # events that come later only delays the end
            longest = min(longest, DRAIN_WAIT)
        wait_ms = int(min(max(self.batch.max_wait, 0.05), longest) * 1000)
        return await self._events_db.watch(
            self._watch_pipeline(),
            full_document=self.config.full_document,
            full_document_before_change="whenAvailable" if self.config.before_images else None,
            max_await_time_ms=wait_ms,
            batch_size=self.batch.max_rows,
            **resume,
        )

    async def stream(
        self, start: str | None, until: str | None = None
    ) -> AsyncIterator[ChangeBatch]:
        """Batches of changes after ``start``; with ``until``, stops once caught up with it.

        ``until`` is a cluster time (:meth:`current_position`): events at or before it are
        delivered; the stream stops at the first event after it, or at the first empty poll
        (the stream has caught up with a time later than ``until``).
        """
        resume: dict[str, Any] = {}
        if start:
            ts, token = parse_position(start)
            resume = {"start_after": token} if token else {"start_at_operation_time": ts}
        until_ts = position_time(until) if until else None
        boundaries = Boundaries(start)
        echoes = Echoes(self.config.own_origins)
        while not self._closed:
            try:
                changes = await self._open_stream(resume, until_ts is not None)
            except PyMongoError as exc:
                raise map_error(exc, f"opening the stream on {self.config.database}") from exc
            #: the next event, asked for while the events before it are converted (read-ahead)
            ahead: asyncio.Future[Any] | None = None
            try:
                while True:
                    events, finished = await self._collect(changes, until_ts, boundaries, ahead)
                    ahead = None
                    if events and not finished and self._may_read_ahead(changes, events):
                        # the server finds the next events while these are converted
                        ahead = asyncio.ensure_future(changes.try_next())
                    if events:
                        resume = {"start_after": events[-1]["_id"]}
                        for batch in await self._to_batches(events, boundaries, echoes):
                            yield batch
                    if (finished or not events) and boundaries.settle():
                        # the stream moved past the last transaction, so it has ended: its rows
                        # may commit (the runtime holds rows until a batch carries a resume)
                        self._last_emitted = boundaries.last
                        idle = META_SCHEMA.empty_table()
                        yield ChangeBatch(
                            self.config.collections[0], idle, (), {"resume": boundaries.last}
                        )
                    if finished or self._closed:
                        return
                    if not changes.alive:
                        break  # invalidated: reopen after the invalidate event
            except PyMongoError as exc:
                if self._closed:
                    return
                raise map_error(exc, f"reading the stream on {self.config.database}") from exc
            finally:
                if ahead is not None:
                    # an event read ahead but not delivered is read again: the stream resumes
                    # after the last delivered one (a cancelled read closes the stream itself,
                    # which is bounded like the close below)
                    ahead.cancel()
                    await asyncio.wait({ahead}, timeout=CLOSE_SECONDS)
                    if ahead.done() and not ahead.cancelled():
                        ahead.exception()  # retrieved: it no longer matters
                await close_stream(changes)

    @staticmethod
    def _may_read_ahead(changes: AsyncChangeStream[Any], events: list[dict[str, Any]]) -> bool:
        """Whether to ask for the next event before these are converted: not after an
        ``invalidate`` (the stream reopens after it) nor on a cursor that has ended."""
        return changes.alive and events[-1].get("operationType") != "invalidate"

    async def _collect(
        self,
        changes: AsyncChangeStream[Any],
        until: Timestamp | None,
        boundaries: Boundaries,
        ahead: asyncio.Future[Any] | None = None,
    ) -> tuple[list[dict[str, Any]], bool]:
        """Events for one flush, and whether the stream is finished (``until`` reached).
        ``ahead``: a ``try_next`` already under way, whose answer comes first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.batch.max_wait
        events: list[dict[str, Any]] = []
        while len(events) < self.batch.max_rows and (ahead is not None or not self._closed):
            if ahead is not None:
                event, ahead = await ahead, None
            else:
                event = await changes.try_next()
            if event is None:
                self._caught_up = not events
                if not changes.alive:
                    return events, False
                if until is not None:
                    # an empty poll means caught up, unless the server's token says otherwise
                    scanned = token_time(changes.resume_token)
                    done = scanned is None or scanned >= until
                    if done or events:
                        return events, done
                elif events or boundaries.open:
                    return events, False  # (nothing more: an open transaction has ended)
                continue
            self._caught_up = False
            if until is not None and event["clusterTime"] > until:
                return events, True
            events.append(event)
            if event["operationType"] == "invalidate" or loop.time() >= deadline:
                break
        return events, self._closed

    async def _to_batches(
        self, events: list[dict[str, Any]], boundaries: Boundaries, echoes: Echoes
    ) -> list[ChangeBatch]:
        """Events → batches. The per-event work runs in a worker thread, so the event loop
        meanwhile sends the read-ahead request and applies earlier groups."""
        replaced: list[tuple[str, str | None]] = []
        rows, seconds = await asyncio.to_thread(
            self._event_rows, events, boundaries, echoes, replaced
        )
        for collection, renamed in replaced:
            self._copy_again(collection, renamed)
        rows = await self._look_up(rows)
        batches, more = await asyncio.to_thread(self._rows_to_batches, rows)
        if self.phases is not None:
            self.phases.add("decode", seconds + more)
        if batches and boundaries.last is not None:
            # only the last batch of a flush may move the checkpoint: the runtime may commit
            # the earlier ones alone, and they do not cover the later collections' rows
            batches[-1] = replace(batches[-1], meta={**batches[-1].meta, "resume": boundaries.last})
            self._last_emitted = boundaries.last
        return batches

    def _copy_again(self, collection: str, renamed: str | None) -> None:
        """Ask for ``collection``'s copy: another collection was renamed over it, and its
        documents are in no event. Asked when the rename is read, before anything after it
        is applied, so a crash cannot lose the request (the copy, and the sweep of the
        replaced documents after it, are fenced against the stream's changes)."""
        ask = self.copy_again
        if ask is None:
            log.error(
                "%s: collection %s was renamed to %s, which is also synced: run syncengine "
                "resnapshot for %s",
                self.pipeline, renamed, collection, collection,
            )  # fmt: skip
            return
        request = ask(collection)
        log.warning(
            "%s: collection %s was renamed to %s, replacing it: %s is copied again "
            "(request %d)",
            self.pipeline, renamed, collection, collection, request,
        )  # fmt: skip

    def _event_rows(
        self,
        events: list[dict[str, Any]],
        boundaries: Boundaries,
        echoes: Echoes,
        replaced: list[tuple[str, str | None]],
    ) -> tuple[list[Row], float]:
        """The rows of ``events`` (and the seconds it took); notes their transactions and
        which are the engine's own (two-way), and in ``replaced`` each configured collection
        another was renamed over (with that one's name)."""
        started = time.perf_counter()
        rows: list[Row] = []
        for event in events:
            if event["operationType"] == "rename":
                into = renamed_into(event, self.config.collections)
                if into is not None:
                    replaced.append((into, event["ns"].get("coll")))
            boundaries.see(txn_of(event), event_position(event["clusterTime"], event["_id"]))
            echo = echoes.see(event)
            change = echoes.data_event(event) if echo else event
            if echo is None or change is None:
                continue  # a marker, or a tombstone of a delete already read: no data change
            found = event_rows(
                change, self.config.collections, current=self.current, wall=bool(echoes.own)
            )
            for row in found:
                row.echo = echo
            rows.extend(found)
        return rows, time.perf_counter() - started

    def _rows_to_batches(self, rows: list[Row]) -> tuple[list[ChangeBatch], float]:
        """One batch per collection (and per echo or not), in first-seen order (and the
        seconds it took)."""
        started = time.perf_counter()
        grouped: dict[tuple[str, bool], list[Row]] = {}
        for row in rows:
            grouped.setdefault((row.collection, row.echo), []).append(row)
        batches = []
        for (name, echo), group in grouped.items():
            batch = rows_to_batch(name, group, before_images=self.config.before_images)
            batches.append(replace(batch, meta={**batch.meta, ECHO: True}) if echo else batch)
        return batches, time.perf_counter() - started

    async def _look_up(self, rows: list[Row]) -> list[Row]:
        """Fill rows whose event carried no document (see ``events.Row.lookup``)."""
        wanted: dict[str, list[Any]] = {}
        for row in rows:
            if row.lookup:
                wanted.setdefault(row.collection, []).append(row.doc["_id"])
        if not wanted:
            return rows
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for name, ids in wanted.items():
            try:
                async for doc in self._events_db[name].find({"_id": {"$in": ids}}):
                    found[(name, repr(doc["_id"]))] = doc
            except PyMongoError as exc:
                raise map_error(exc, f"looking up documents in {name}") from exc
        out = []
        for row in rows:
            if row.lookup:
                current = found.get((row.collection, repr(row.doc["_id"])))
                if current is None:
                    continue  # gone since: its delete follows in the stream
                row.doc, row.lookup = current, False
            out.append(row)
        return out

    @contextlib.asynccontextmanager
    async def snapshot_reads(self) -> AsyncIterator[None]:
        """:meth:`current_rows` and :meth:`sibling_versions` inside the block read one
        snapshot: a read-only transaction at read concern ``snapshot``, aborted after.

        Why: a two-way direction restates an echo as the document its key holds now *and* the
        version its sibling recorded for it; read apart, a sibling apply committing between
        the two paired one write's document with the next write's version (as it did on
        Postgres: :func:`syncengine.sources.postgres.current.one_snapshot`)."""
        client = self.db.client
        try:
            async with client.start_session() as session:
                await session.start_transaction(read_concern=ReadConcern("snapshot"))
                self._snapshot_session = session
                try:
                    yield
                finally:
                    self._snapshot_session = None
                    if session.in_transaction:
                        await session.abort_transaction()
        except PyMongoError as exc:
            raise map_error(exc, "reading the source in one snapshot") from exc

    async def current_rows(
        self, table: str, key: tuple[str, ...], schema: pa.Schema, keys: pa.Table
    ) -> pa.Table:
        """What ``keys`` (``_id``) of collection ``table`` hold now, as rows of ``schema``
        (:mod:`.current`; two-way ``prefer: target``)."""
        from syncengine.sources.mongo.current import as_rows, current_documents

        try:
            docs = await current_documents(self._events_db[table], keys, self._snapshot_session)
        except PyMongoError as exc:
            raise map_error(exc, f"reading current documents of {table}") from exc
        return as_rows(docs, schema)

    async def sibling_versions(
        self,
        table: str,
        key: tuple[str, ...],
        keys: pa.Table,
        row_keys: list[str],
        sibling: tuple[str, str],
    ) -> tuple[pa.Table, pa.Table]:
        """The versions ``sibling`` (pipeline, origin) recorded in this database for these
        keys of collection ``table`` (two-way ``timestamp`` echoes). A document says nothing
        of who wrote it, so every present one is taken as the sibling's where it recorded a
        row: a person's write since follows in this stream with its own time."""
        from syncengine.targets.mongo import versions

        try:
            recorded = await versions.read(
                self.db, sibling[0], table, row_keys, self._snapshot_session
            )
        except PyMongoError as exc:
            raise map_error(exc, f"reading versions of {table}") from exc
        commits = keys.select(list(key))
        commits = commits.append_column("_mine", pa.array([True] * commits.num_rows, pa.bool_()))
        return commits, recorded.drop_columns(["h"])

    # -- snapshot -----------------------------------------------------------------------

    async def snapshot_position(self) -> str | None:
        checkpoint = self.state.get_checkpoint(self.pipeline, self._snapshot_stream)
        return checkpoint.position if checkpoint else None

    @property
    def _snapshot_stream(self) -> str:
        return f"{self.stream_name}:snapshot"

    async def snapshot(
        self,
        tables: Sequence[str] | None = None,
        where: str | Mapping[str, Any] | None = None,
        parallel: int = 2,
    ) -> AsyncIterator[ChangeBatch]:
        """Every document as ``r`` rows, consistent with :meth:`snapshot_position`.

        Resumes an interrupted snapshot (chunks not done); a finished one starts over.
        With :attr:`stream_starts_at_snapshot` the batches say ``at_resume``: the stream then
        opens at the snapshot's cluster time, and every event it delivers has a position after
        that bare time (:mod:`.positions`), so the rows need no per-key position fence.
        """
        names = self._collections(tables)
        try:
            match = parse_where(where)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        wheres = snapshot_matches(names, self.row_filters, match)
        try:
            chunks = await self._prepare_chunks(names)
            position = await self.snapshot_position()
            assert position is not None
            colls = {name: self.db[name] for name in names}
            async for batch in scan_chunks(
                colls,
                chunks,
                position=position,
                wheres=wheres,
                parallel=parallel,
                batch_rows=self.batch.max_rows,
                mark_done=lambda chunk: self.state.put_chunks(self.pipeline, [chunk]),
                at_resume=self.stream_starts_at_snapshot,
            ):
                yield batch
        except PyMongoError as exc:
            raise map_error(exc, f"snapshot of {self.config.database}") from exc

    def _collections(self, tables: Sequence[str] | None) -> list[str]:
        if not tables:
            return list(self.config.collections)
        unknown = [t for t in tables if t not in self.config.collections]
        if unknown:
            raise UsageError(
                f"{', '.join(unknown)}: not a configured collection "
                f"(known: {', '.join(self.config.collections)})"
            )
        return list(tables)

    async def _prepare_chunks(self, names: list[str]) -> list[Chunk]:
        """Pending chunks to scan: an interrupted snapshot's, plus fresh plans for the rest.
        Chunks left over are an interrupted snapshot even when every one is done (the process
        died before the backfill's checkpoint; a fresh one would stream from a later time and
        lose the deletes since they were read): the runtime clears a finished one's."""
        existing = {name: self.state.get_chunks(self.pipeline, name) for name in names}
        resuming = any(existing.values())
        if resuming and await self.snapshot_position() is not None:
            log.info("%s: resuming the interrupted snapshot of %s", self.pipeline, names)
            fresh = [name for name in names if not existing[name]]
        else:
            position = await self.current_position()  # noted before any read
            self.state.put_checkpoint(self.pipeline, self._snapshot_stream, position)
            log.info("%s: snapshot of %s at cluster time %s", self.pipeline, names, position)
            fresh = names
        for name in fresh:
            self.state.clear_chunks(self.pipeline, name)
            plan = await plan_chunks(
                self.db[name], self.config.snapshot_chunk_docs, self._recent_count(name)
            )
            existing[name] = [
                Chunk(name, i, encode_bound(lo), encode_bound(hi))
                for i, (lo, hi) in enumerate(plan)
            ]
            self.state.put_chunks(self.pipeline, existing[name])
        return [c for name in names for c in existing[name] if c.status != "done"]

    def table_snapshot(
        self,
        table: str,
        where: str | None = None,
        parallel: int = 2,
        hold: Callable[[], Awaitable[None]] | None = None,
    ) -> AsyncIterator[ChangeBatch]:
        """One collection's documents while the stream runs (see :mod:`.tablesnap`); every
        collection has its ``_id`` key, so nothing is ever held (``hold`` is not needed)."""
        from syncengine.sources.mongo.tablesnap import table_snapshot

        return table_snapshot(self, table, where, parallel)

    async def visible_position(self, required: bool = False) -> str | None:
        """Where a table sweep's deletes go (see :mod:`syncengine.runtime.sweep`): the cluster
        time now, noted before the sweep reads."""
        return await self.current_position()

    async def scan(
        self, table: str, columns: Sequence[str] | None = None
    ) -> AsyncIterator[ChangeBatch]:
        """The collection's documents as ``r`` batches, no chunk progress (for ``verify``).
        Whole documents whatever ``columns`` says (they are decoded in a thread already).

        Always yields at least one batch (an empty one for an empty collection)."""
        (name,) = self._collections([table])
        position = await self.current_position()
        empty = True
        try:
            async for batch in scan_chunks(
                {name: self.db[name]},
                [Chunk(name, 0, None, None)],
                position=position,
                wheres={},
                parallel=1,
                batch_rows=self.batch.max_rows,
                mark_done=lambda chunk: None,
            ):
                empty = False
                yield batch
        except PyMongoError as exc:
            raise map_error(exc, f"scanning {name}") from exc
        if empty:
            decoded = Decoded(pa.table({"_id": pa.array([], pa.null())}))
            yield snapshot_batch(name, decoded, position, as_datetime(position_time(position)), {})
