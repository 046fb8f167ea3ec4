"""MongoTarget: one unordered ``bulk_write`` per table, state committed with the data when the
server runs transactions.

With transactions (replica set or sharded cluster, wire version ≥ 7): data, shadow rows and the
checkpoint go in one transaction (exactly-once), stored in the target database's
``_syncengine_shadow`` / ``_syncengine_checkpoints`` collections; ``keeps_state`` is then True.
Without: the data first, then shadow and checkpoint in the SQLite store. Every operation is an
upsert by ``_id``, a delete by ``_id``, or an insert of an ``_id`` taken to be absent that turns
into an upsert if it is not (:mod:`syncengine.targets.mongo.fresh`), so replaying a batch after
a crash is harmless. A group of nothing but snapshot rows with no state to write (a backfill
under ``remote``) goes in without a transaction, in pipelined slices
(:mod:`syncengine.targets.mongo.inserts`).

Partial failures: see :mod:`syncengine.targets.mongo.bulk`.

A direction of a two-way pipeline (``config.origin``) writes everything in transactions, each
opening with its origin's marker (:mod:`syncengine.targets.mongo.origin`), snapshot rows too:
a write the other direction could not recognise would come back to the source.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pyarrow as pa
from pymongo import AsyncMongoClient
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.errors import PyMongoError

from syncengine.config.models import MongoTargetConfig
from syncengine.errors import FatalError, UsageError
from syncengine.mongoclient import connect, tls_hint
from syncengine.mongouri import majority_unless_set
from syncengine.state.protocols import TargetState
from syncengine.state.targetdb import TargetDatabaseState
from syncengine.targets import stopping
from syncengine.targets.base import ApplyResult, Checkpoint, TableSpec, TableWrite
from syncengine.targets.faults import fault_point
from syncengine.targets.mongo import epochs, origin, readback, sessions, versions
from syncengine.targets.mongo.bulk import (
    Existing,
    Rejected,
    bulk_write,
    key_rows,
    row_of,
    translate,
)
from syncengine.targets.mongo.fresh import find_ids, insert_positions
from syncengine.targets.mongo.inserts import insert_snapshot, pure_snapshot
from syncengine.targets.mongo.keyless import plan_keyless
from syncengine.targets.mongo.ops import RowWrites, documents_to_rows, key_ids, plan_writes
from syncengine.targets.mongo.split import halves, oversized, too_large
from syncengine.targets.mongo.state import SHADOW, MongoSession, MongoTargetState
from syncengine.targets.shadow import (
    PurgeSchedule,
    commit_to_sqlite,
    get_sqlite_checkpoint,
    read_sqlite_shadow,
    without_rejected,
)

Planned = list[tuple[TableWrite, RowWrites]]

log = logging.getLogger("syncengine.targets.mongo")


class MongoTarget:
    """See docs/targets.md. ``transactions`` forces the mode (None: detect)."""

    #: mirrors documents (conflict detection applies), not a change log
    change_log = False
    #: BSON dates hold milliseconds: finer timestamps are floored before detection
    #: (targets/precision.py)
    timestamp_unit = "ms"

    def __init__(
        self,
        pipeline: str,
        config: MongoTargetConfig,
        state: TargetState | None,
        *,
        transactions: bool | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.config = config
        self.state = state
        self._want_transactions = transactions
        self.keeps_state = bool(transactions)
        self._client: AsyncMongoClient[dict[str, Any]] | None = None
        self._collections: set[str] = set()
        self._purges = PurgeSchedule()
        #: two-way: the documents the current group read back (:mod:`.readback`)
        self._seen: readback.Seen | None = None
        #: shadow rows and checkpoints in the target database (with transactions)
        self._store: TargetDatabaseState[MongoSession] = MongoTargetState(pipeline)
        #: cluster mode: the fencing epoch every commit checks (epochs.py); None: embedded
        self.epoch: int | None = None
        #: server sessions this run recorded (:mod:`.sessions`); None: earlier runs' not ended yet
        self._sessions: set[Any] | None = None
        #: False for a target opened beside the pipeline's run (make_target's ``beside_run``)
        self.ends_earlier_runs = True
        self._sessions_lock = asyncio.Lock()

    @property
    def db(self) -> Any:
        assert self._client is not None, "open() first"
        return self._client[self.config.database]

    async def open(self) -> None:
        if self._client is not None:
            return
        uri = self.config.uri.get_secret_value()
        self._client = connect(uri, "target", tz_aware=True, **majority_unless_set(uri))
        try:
            hello = await self._client.admin.command("hello")
        except PyMongoError as exc:
            await self.close()
            error = translate(exc, "connect")
            error.message += tls_hint(uri)
            raise error from None
        supported = (
            ("setName" in hello or hello.get("msg") == "isdbgrid")
            and hello.get("maxWireVersion", 0) >= 7
            and hello.get("logicalSessionTimeoutMinutes") is not None
        )
        self.keeps_state = (
            supported
            if self._want_transactions is None
            else (self._want_transactions and supported)
        )
        if not self.keeps_state and self.state is None:
            raise FatalError("mongo target without transactions needs the SQLite state store")
        if self.two_way and not self.keeps_state:
            await self.close()
            raise FatalError(
                "two_way with a Mongo side needs transactions, which this server does not run",
                hint="use a replica set or a sharded cluster (MongoDB 4.0 or later)",
            )
        if self.two_way:
            try:
                await origin.ensure(self.db)
            except PyMongoError as exc:
                await self.close()
                raise translate(exc, "creating the origin markers") from None

    async def claim_epoch(self, holder: str) -> int:
        """Cluster mode: take the pipeline over from any earlier attempt (epochs.py). From
        here on every commit of this target checks the epoch in its own transaction, the
        snapshot's rows too (they go through transactions instead of bare inserts)."""
        await self.open()
        if not self.keeps_state:
            raise UsageError(
                f"{self.pipeline}: a cluster stream into mongo needs a server that runs "
                "transactions (a replica set or a sharded cluster), which commit the fencing "
                "epoch with the checkpoint",
                hint="run this pipeline with syncengine run",
            )
        await self._end_earlier_runs()  # an attempt's open transaction would hold the claim
        try:
            self.epoch = await epochs.claim(self.db, self.pipeline, holder)
        except PyMongoError as exc:
            raise translate(exc, "claiming the pipeline's fencing epoch") from None
        return self.epoch

    @property
    def two_way(self) -> bool:
        """One direction of a two-way pipeline: its transactions carry its origin's marker."""
        return bool(self.config.origin)

    @property
    def keeps_tombstones(self) -> bool:
        """Two-way: a delete that finds no document is recorded as a version, which the
        sibling's reader takes for the delete's echo (:func:`versions.operations`). A Mongo
        side cannot time a person's writes, so a change may have been applied over this
        delete's key provisionally on the other side; only the delete's time corrects it."""
        return self.two_way

    async def close(self) -> None:
        self._seen = None
        if self._client is not None:
            await self._client.close()
            self._client = None
        self._collections.clear()

    async def ensure_table(self, spec: TableSpec) -> TableSpec:
        """Collections are schemaless: create the collection (transactions need it to exist).
        A two-way direction creates it with post-images, which the reverse direction's stream
        reads (:func:`.origin.collection_options`)."""
        await self.open()
        if spec.name in self._collections:
            return spec
        try:
            if spec.name not in await self.db.list_collection_names(filter={"name": spec.name}):
                options = origin.collection_options() if self.two_way else {}
                await self.db.create_collection(spec.name, check_exists=False, **options)
        except PyMongoError as exc:
            if getattr(exc, "code", None) != 48:  # NamespaceExists: a concurrent create won
                raise translate(exc, f"creating {spec.name}") from None
        self._collections.add(spec.name)
        return spec

    async def read_rows(self, spec: TableSpec, keys: pa.Table) -> pa.Table:
        await self.open()
        if not keys.num_rows:
            return spec.schema.empty_table()
        ids = key_ids(spec, keys)
        try:
            docs = await find_ids(self.db[spec.name], ids)
        except PyMongoError as exc:
            raise translate(exc, f"reading {spec.name}") from None
        if self._seen is not None:  # the apply checks nobody wrote them since
            readback.record(self._seen, spec.name, ids, docs)
        return documents_to_rows(spec, docs, as_stored=True)

    async def start_group(self, reads: bool = False) -> None:
        """The group's read-back starts (:mod:`.readback`): a two-way direction's, and a
        one-way group's whose strategy reads the documents (``reads``) when the apply runs
        in a transaction (without one there is no snapshot to check them again in)."""
        self._seen = {} if self.two_way or (reads and self.keeps_state) else None

    async def end_group(self) -> None:
        self._seen = None

    async def scan(self, spec: TableSpec) -> AsyncIterator[pa.Table]:
        """Every document in ``_id`` order, as tables of ``spec``'s columns (for ``verify``)."""
        await self.open()
        chunk: list[dict[str, Any]] = []
        try:
            async for doc in self.db[spec.name].find({}, sort=[("_id", 1)], batch_size=10_000):
                chunk.append(doc)
                if len(chunk) >= 10_000:
                    yield documents_to_rows(spec, chunk)
                    chunk = []
        except PyMongoError as exc:
            raise translate(exc, f"scanning {spec.name}") from None
        if chunk:
            yield documents_to_rows(spec, chunk)

    async def holds_rows(self, table: str) -> bool:
        """Whether the collection holds a document (absent: none)."""
        await self.open()
        try:
            found = await self.db[table].find_one({}, projection={"_id": 1})
        except PyMongoError as exc:
            raise translate(exc, f"looking for documents in {table}") from None
        return found is not None

    async def read_commit_times(self, spec: TableSpec, keys: pa.Table) -> pa.Table:
        """Key columns of the documents found, ``_ts`` (unknown: a document has no commit
        time) and ``_mine``: its content is this direction's last recorded write, whose
        version :meth:`read_versions` says (two-way ``timestamp``, :mod:`.versions`)."""
        await self.open()
        try:
            return await versions.commit_times(self.db, self.pipeline, spec, keys)
        except PyMongoError as exc:
            raise translate(exc, f"reading versions of {spec.name}") from None

    async def read_versions(self, table: str, row_keys: list[str]) -> pa.Table:
        """The versions this direction recorded for these keys (:mod:`.versions`)."""
        await self.open()
        try:
            found = await versions.read(self.db, self.pipeline, table, row_keys)
        except PyMongoError as exc:
            raise translate(exc, f"reading versions of {table}") from None
        return found.drop_columns(["h"])

    async def read_shadow(self, table: str, row_keys: Sequence[str]) -> pa.Table:
        await self.open()
        if not self.keeps_state:
            assert self.state is not None
            return read_sqlite_shadow(self.state, self.pipeline, table, row_keys)
        try:
            return await self._store.read_shadow(MongoSession(self.db), table, row_keys)
        except PyMongoError as exc:
            raise translate(exc, "reading the shadow") from None

    async def get_checkpoint(self, stream: str) -> str | None:
        await self.open()
        if not self.keeps_state:
            assert self.state is not None
            return get_sqlite_checkpoint(self.state, self.pipeline, stream)
        return await self._store.read_checkpoint(MongoSession(self.db), stream)

    async def reset_checkpoint(self, stream: str) -> None:
        """Forget the stored position (the SQLite copy is reset by the caller)."""
        await self.open()
        if self.keeps_state:
            await self._store.delete_checkpoint(MongoSession(self.db), stream)

    async def forget_table(self, table: str, targets: Sequence[str]) -> dict[str, int]:
        """Remove the shadow documents of ``targets`` (``checkpoints remove``); without
        transactions they live in the SQLite store, which the caller clears."""
        await self.open()
        if not self.keeps_state:
            return {}
        try:
            done = await self.db[SHADOW].delete_many(
                {"p": self.pipeline, "t": {"$in": list(targets)}}
            )
        except PyMongoError as exc:
            raise translate(exc, "removing the table's state") from None
        return {"target shadow": done.deleted_count}

    # -- apply ----------------------------------------------------------------------------

    async def apply(
        self, writes: Sequence[TableWrite], checkpoint: Checkpoint | None
    ) -> ApplyResult:
        await self.open()
        for write in writes:
            await self.ensure_table(write.spec)
        if pure_snapshot(writes, checkpoint) and not self.two_way and self.epoch is None:
            try:
                return await insert_snapshot(self.db, writes)
            except PyMongoError as exc:
                raise translate(exc, "apply") from None
        if self.keeps_state and oversized(writes) and (parts := halves(list(writes))):
            return await self._apply_halves(parts, checkpoint)
        planned = [
            (w, plan_writes(w.spec, w.batch.data) if w.spec.key else plan_keyless(w.spec, w))
            for w in writes
        ]
        try:
            if self.keeps_state:
                return await self._apply_in_transaction(planned, checkpoint)
            return await self._apply_then_checkpoint(planned, checkpoint)
        except PyMongoError as exc:
            parts = halves(list(writes)) if too_large(exc) else None
            if parts is None:
                raise translate(exc, "apply") from None
        log.info(
            "mongo target: a group of %d rows is too large for one transaction: halving",
            sum(w.batch.num_rows for w in writes),
        )
        return await self._apply_halves(parts, checkpoint)

    async def _apply_halves(
        self, parts: tuple[list[TableWrite], list[TableWrite]], checkpoint: Checkpoint | None
    ) -> ApplyResult:
        """Each half in its own transaction, the checkpoint with the last (``split``)."""
        first = await self.apply(parts[0], None)
        second = await self.apply(parts[1], checkpoint)
        return first.merged(second)

    async def _apply_then_checkpoint(
        self, planned: Planned, checkpoint: Checkpoint | None
    ) -> ApplyResult:
        result = ApplyResult()
        truncated: set[str] = set()
        shadowed: list[TableWrite] = []
        for write, plan in planned:
            collection = self.db[write.spec.name]
            if plan.truncate:
                await collection.delete_many({})
                result.truncated += 1
                truncated.add(write.spec.name)
            every = list(range(len(plan.rows)))
            inserts = await insert_positions(collection, plan, None)
            refused = await bulk_write(collection, write, plan, every, result, None, inserts)
            shadowed.append(without_rejected(write, key_rows(write, refused)))
        fault_point("mongo.after_data")
        assert self.state is not None
        purge = self._purges.due(checkpoint)
        commit_to_sqlite(self.state, self.pipeline, shadowed, truncated, checkpoint, purge)
        return result

    async def _apply_in_transaction(
        self, planned: Planned, checkpoint: Checkpoint | None
    ) -> ApplyResult:
        assert self._client is not None
        #: write number → row → reason, for rows the server refused in an earlier attempt
        refused: dict[int, dict[int, str]] = {}
        #: write numbers (and SHADOW) whose inserts met existing documents: upserts instead
        upserts: set[int | str] = set()
        holder: list[ApplyResult] = []

        async def attempt(session: AsyncClientSession) -> None:
            # with_transaction may run this again after a transient error: count afresh.
            if holder:  # not the first attempt
                # it retries a transaction that keeps meeting write conflicts for up to 120 s:
                # a stop request ends the group here instead (rolled back, applied again on
                # the next start), as it ends a bisection (reliability findings: the Mongo stop)
                stopping.check()
            holder[:] = [ApplyResult()]
            await self._transaction(session, planned, checkpoint, holder[0], refused, upserts)

        fault_point("mongo.before_transaction")
        async with self._client.start_session() as session:
            await self._recorded(session)
            while True:
                try:
                    await session.with_transaction(attempt)
                    break
                except Rejected as exc:
                    # A write error aborts the whole transaction: drop the refused rows, redo.
                    refused.setdefault(exc.table, {}).update(exc.rows)
                except Existing as exc:
                    upserts.add(exc.table)
        if checkpoint is not None and self._purges.due(checkpoint):
            await self._store.purge_tombstones(MongoSession(self.db), checkpoint.position)
        return holder[0]

    async def _recorded(self, session: AsyncClientSession) -> None:
        """Record ``session`` before its first transaction, earlier runs' sessions ended
        first (:mod:`.sessions`)."""
        await self._end_earlier_runs()
        assert self._sessions is not None
        if session.session_id["id"] in self._sessions:
            return
        try:
            self._sessions.add(await sessions.remember(self.db, self.pipeline, session))
        except PyMongoError as exc:
            raise translate(exc, "recording the session") from None

    async def _end_earlier_runs(self) -> None:
        """Once per run: abort the transactions killed runs of this pipeline left open, which
        would hold their documents for the server's transaction lifetime (:mod:`.sessions`)."""
        async with self._sessions_lock:
            if self._sessions is not None:
                return
            if self.ends_earlier_runs:
                try:
                    ended = await sessions.end_earlier(self.db, self.pipeline)
                except PyMongoError as exc:
                    raise translate(exc, "ending earlier sessions") from None
                if ended:
                    log.info("%s: ended %d earlier session(s)", self.pipeline, ended)
            self._sessions = set()

    async def _transaction(
        self,
        session: AsyncClientSession,
        planned: Planned,
        checkpoint: Checkpoint | None,
        result: ApplyResult,
        refused: dict[int, dict[int, str]],
        upserts: set[int | str],
    ) -> None:
        if self.config.origin:  # first: the reader knows the rest of it is the engine's
            await origin.mark(self.db, session, self.config.origin)
        for number, (write, plan) in enumerate(planned):
            collection = self.db[write.spec.name]
            if plan.truncate:
                await collection.delete_many({}, session=session)
                result.truncated += 1
            skip = refused.get(number, {})
            kept = [i for i, row in enumerate(plan.rows) if row not in skip]
            result.rejected.extend(
                (write.spec.name, row_of(write, i), reason) for i, reason in sorted(skip.items())
            )
            if self._seen is not None:
                await readback.check(collection, self._seen, write.spec, write.batch.data, session)
            allowed = number not in upserts
            inserts = await insert_positions(collection, plan, session, allowed=allowed)
            try:
                await bulk_write(collection, write, plan, kept, result, session, inserts)
            except (Rejected, Existing) as exc:
                exc.table = number
                raise
        fault_point("mongo.after_data")
        await self._write_state(session, planned, checkpoint, refused, upserts)
        if self.epoch is not None:  # last: the epoch document is locked until the commit
            await epochs.hold(self.db, session, self.pipeline, self.epoch)
        fault_point("mongo.before_commit")

    async def _write_state(
        self,
        session: AsyncClientSession,
        planned: Planned,
        checkpoint: Checkpoint | None,
        refused: dict[int, dict[int, str]],
        upserts: set[int | str],
    ) -> None:
        """Shadow rows (one bulk write for every table) and the checkpoint."""
        db = MongoSession(self.db, session)
        writes = [
            without_rejected(write, key_rows(write, sorted(refused.get(number, {}))))
            for number, (write, _) in enumerate(planned)
        ]
        truncated = {write.spec.name for write, plan in planned if plan.truncate}
        await self._store.write_shadow(db, writes, truncated, fresh=SHADOW not in upserts)
        recorded = [
            op
            for write in writes
            if write.shadow.versions is not None
            for op in versions.operations(
                self.pipeline, write.spec.name, write.shadow.versions, write.spec
            )
        ]
        if recorded:  # two-way timestamp: each written row's own version, with the row
            await self.db[versions.VERSIONS].bulk_write(recorded, ordered=False, session=session)
        if checkpoint is not None:
            await self._store.write_checkpoint(db, checkpoint)
