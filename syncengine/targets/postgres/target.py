"""PostgresTarget: tables created and grown from the mapped schema, batches applied set-wise,
shadow rows and the checkpoint committed in the same transaction as the data."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import psycopg
import pyarrow as pa
from psycopg import sql
from psycopg.pq import TransactionStatus

from syncengine import pgsession, tombstones
from syncengine.config.models import PostgresTargetConfig
from syncengine.config.twoway import versions_name
from syncengine.errors import FatalError
from syncengine.names import QualifiedName
from syncengine.state.protocols import TargetState
from syncengine.state.targetdb import TargetDatabaseState
from syncengine.targets.base import ApplyResult, Checkpoint, TableSpec, TableWrite
from syncengine.targets.faults import fault_point
from syncengine.targets.postgres import (
    abandoned,
    beside,
    ddl,
    epochs,
    evolve,
    exact,
    fkorder,
    floor,
    jsonpromote,
    keylater,
    origin,
    rebuild,
    usertypes,
    versions,
)
from syncengine.targets.postgres.apply import ROW_SAVEPOINTS, Applied, apply_write
from syncengine.targets.postgres.errors import is_record_error, translate
from syncengine.targets.postgres.keyless import apply_keyless
from syncengine.targets.postgres.read import read_commit_times, read_rows, scan
from syncengine.targets.postgres.staging import StagingTables
from syncengine.targets.postgres.state import PostgresTargetState
from syncengine.targets.shadow import AnalyzeSchedule, PurgeSchedule, without_rejected

log = logging.getLogger("syncengine.targets.postgres")

if TYPE_CHECKING:
    from syncengine.targets.postgres.passthrough import BinaryCopySink

IDLE = TransactionStatus.IDLE


class PostgresTarget:
    """See docs/targets.md. ``keeps_state``: state lives in ``_syncengine`` in the target."""

    keeps_state = True
    #: mirrors rows (conflict detection applies), not a change log
    change_log = False
    #: enforces a ServerFence in its apply statements (syncengine/targets/postgres/fence.py)
    server_fence = True
    #: a backlog's group may take up to GROUP_BATCHES batches (syncengine/runtime/runner.py)
    grows_groups = True
    #: creates a Postgres source's generated columns as generated (runtime/pipeline.py)
    generates_columns = True

    def __init__(
        self, pipeline: str, config: PostgresTargetConfig, state: TargetState | None = None
    ) -> None:
        self.pipeline = pipeline
        self.config = config
        self.state = state
        #: checkpoints and shadow rows in ``_syncengine``, written in the apply transaction
        self._store: TargetDatabaseState[psycopg.AsyncConnection] = PostgresTargetState(pipeline)
        self._conn: psycopg.AsyncConnection | None = None
        #: the server session behind ``_conn`` (ended if the connection is abandoned)
        self._session: abandoned.ServerSession | None = None
        #: table name → its columns and their formatted types, as last seen in the catalog
        self._columns: dict[str, dict[str, str]] = {}
        #: table → its generated columns (computed by Postgres: never written)
        self._generated: dict[str, frozenset[str]] = {}
        self._purges = PurgeSchedule()
        self._analyze = AnalyzeSchedule()
        #: the connection's reusable staging tables (staging.py)
        self._staging = StagingTables()
        #: the foreign keys among a group's tables, which order its writes (fkorder.py)
        self._foreign_keys = fkorder.ForeignKeys()
        #: tables created while this is on get their primary key after the load (keylater.py)
        self._keys_after_load = False
        #: table name → key of the tables this process created without their key index
        self._pending_keys: dict[str, tuple[str, ...]] = {}
        #: cluster mode: the fencing epoch every commit checks (epochs.py); None: embedded
        self.epoch: int | None = None
        #: the fence that epoch belongs to: the pipeline's, or one snapshot chunk's
        self.fence = pipeline
        #: tables this target and its :meth:`beside` ones may write at the same time: each
        #: transaction writing one of them holds its lock (beside.py)
        self.shared_tables: set[str] = set()

    @property
    def two_way(self) -> bool:
        """One direction of a two-way pipeline (it applies under a replication origin):
        ``timestamp`` compares the target rows' commit times (conflicts/resolver.py)."""
        return bool(self.config.replication_origin)

    @property
    def in_mesh(self) -> bool:
        """A direction of a mesh (other directions write into this database too)."""
        return bool(self.config.peer_origins)

    @property
    def keeps_tombstones(self) -> bool:
        """Deletes that find no row are recorded as versions and noted for the sibling's
        reader (:mod:`syncengine.tombstones`): in a mesh only, where another node may have
        removed the row already (in a pair the other side's delete is what removed it)."""
        return self.in_mesh

    async def _note_tombstones(self, conn: psycopg.AsyncConnection, write: TableWrite) -> None:
        """The deletes this group recorded, and those that found no row whether recorded or
        not, as a note the sibling's reader turns into echoes (:mod:`syncengine.tombstones`:
        a delete that found no row writes nothing else).

        Why the unrecorded ones: another node's direction may have removed the row already,
        at this very version (it learnt the delete first), while the sibling applied an older
        write of the key over the delete's node. The note is that write's only correction;
        the sibling's reader states it with the version the key holds here, not this one."""
        recorded = write.shadow.versions
        gone = list(write.shadow.absent_deletes)
        if recorded is not None and recorded.num_rows:
            deleted = recorded.filter(recorded.column("deleted")).column("row_key").to_pylist()
            gone = list(dict.fromkeys([*deleted, *gone]))
        if gone:
            table = QualifiedName.parse(write.spec.name, self.config.schema_).sql
            await conn.execute(
                "SELECT pg_catalog.pg_logical_emit_message(true, %s, %s::bytea)",
                (tombstones.PREFIX, tombstones.encode(table, gone)),
            )

    @property
    def _origins(self) -> list[str]:
        """The engine's origins writing into this database: this direction's, and in a mesh
        the other nodes' directions into the same node."""
        own = self.config.replication_origin
        return [*([own] if own else []), *self.config.peer_origins]

    async def start_group(self, reads: bool = False) -> None:
        """Read back and apply a group in one transaction: a two-way direction's always, a
        one-way pipeline's when a strategy reads the target rows (``reads``: ``local``,
        ``merge``, ``timestamp``, ``manual``, ``audit``). The rows read back are locked until
        the commit (read.py), so a person's update or delete of one waits for the apply and
        then applies over what it wrote, instead of being overwritten unseen (an edit the
        strategy should have kept lost; two-way: a delete the other direction carried
        across undone, the sides apart). REPEATABLE READ: a write committed after the
        snapshot to a key the group writes (a row inserted where none was read) makes the
        apply fail with a serialization error, retried from the checkpoint. A one-way group
        while a table copy writes beside the stream (``shared_tables``) runs READ COMMITTED:
        its apply waits for the copy's commits (beside.py) and must see them, not fail on
        them; only an insert racing its read of a missing row goes unseen there."""
        if not (self.two_way or reads):
            return
        conn = await self._connection()
        repeatable = self.two_way or not self.shared_tables
        try:
            await self.end_group()
            if repeatable:
                await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            else:
                await conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        except psycopg.Error as exc:
            raise translate(exc, "starting a group") from None

    def _in_group(self, conn: psycopg.AsyncConnection) -> bool:
        """Whether reads run in a group's transaction (they then lock: read.py)."""
        return conn.pgconn.transaction_status != IDLE

    async def end_group(self) -> None:
        """Roll back a group transaction that no apply committed (nothing was written)."""
        conn = self._conn
        if conn is not None and not conn.closed and conn.pgconn.transaction_status != IDLE:
            await conn.execute("ROLLBACK")

    def _split(self, name: str) -> tuple[str, str]:
        """``schema.table`` names a schema; a plain name lives in the configured schema.
        Either form of :mod:`syncengine.names` (``"T.with.dots"`` is one table)."""
        parsed = QualifiedName.parse(name, self.config.schema_)
        return parsed.schema, parsed.name

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if self._conn is not None:  # it broke: psycopg closed it
            await self._drop_connection()
        try:
            # autocommit: reads do not leave a transaction open; writes use explicit ones.
            conn = await psycopg.AsyncConnection.connect(
                self.config.dsn.get_secret_value(), autocommit=True
            )
            # the text forms read back, whatever the database's defaults; and UTF-8: the
            # decoded path writes COPY text as UTF-8 bytes, which the server must read as
            # UTF-8 and convert (or refuse) for a database in another encoding, never store
            # as that encoding's characters (a LATIN1 target got 'â\x82¬' for '€')
            await pgsession.pin(conn)
            # staging tables live in local buffers; the 8MB default spills a 100k-row batch
            # to disk (must be set before the session's first temporary table)
            await conn.execute("SET temp_buffers = '128MB'")
            await ddl.ensure_state_schema(conn)
            if self.config.replication_origin:  # two-way: readers skip the engine's writes
                await origin.setup_session(conn, self.config.replication_origin)
                await versions.ensure(conn)
            self._session = await abandoned.identify(conn)
        except psycopg.Error as exc:
            raise translate(exc, "connect") from None
        self._conn = conn
        self._columns.clear()
        self._staging = StagingTables()
        return conn

    async def open(self) -> None:
        await self._connection()

    async def claim_epoch(self, holder: str, fence: str | None = None) -> int:
        """Cluster mode: take the pipeline over from any earlier attempt (epochs.py). From
        here on every commit of this target, and of its chunk sinks, checks the epoch in its
        own transaction and is refused once a later attempt claimed the pipeline.
        ``fence``: claim that fence instead of the pipeline's (a snapshot chunk's attempt,
        :mod:`syncengine.cluster.snapchunks`)."""
        conn = await self._connection()
        try:
            self.fence = fence or self.pipeline
            self.epoch = await epochs.claim(conn, self.fence, holder)
        except psycopg.Error as exc:
            raise translate(exc, "claiming the pipeline's fencing epoch") from None
        return self.epoch

    async def current_epoch(self) -> epochs.Epoch | None:
        """The stored fencing epoch (``status`` in cluster mode)."""
        conn = await self._connection()
        try:
            return await epochs.current(conn, self.pipeline)
        except psycopg.Error as exc:
            raise translate(exc, "reading the pipeline's fencing epoch") from None

    def beside(self) -> PostgresTarget:
        """A target on a connection of its own, to apply beside this one (a table's snapshot
        beside the stream); writes of :attr:`shared_tables` serialize per table (beside.py).
        Register a table there while neither applies; close the returned target after use."""
        other = PostgresTarget(self.pipeline, self.config, self.state)
        other.shared_tables = self.shared_tables
        other.epoch, other.fence = self.epoch, self.fence
        return other

    async def close(self) -> None:
        if self._conn is not None:
            await self._drop_connection()

    async def _drop_connection(self) -> None:
        """Close the connection; one that broke or is inside a transaction may leave its
        server session holding that transaction's locks, which is ended (:mod:`.abandoned`)."""
        conn, self._conn = self._conn, None
        assert conn is not None
        left = abandoned.abandoned(conn)
        await conn.close()
        session, self._session = self._session, None
        if left and session is not None:
            await abandoned.end(self.config.dsn.get_secret_value(), session, self.pipeline)

    # -- tables ---------------------------------------------------------------------------

    async def ensure_table(self, spec: TableSpec) -> TableSpec:
        conn = await self._connection()
        schema, table = self._split(spec.name)
        try:
            async with conn.transaction():
                columns, deferred = await self._grow(conn, schema, table, spec)
                generated = await ddl.generated_columns(conn, schema, table)
        except psycopg.Error as exc:
            raise translate(exc, f"preparing table {spec.name}") from None
        if deferred:
            self._pending_keys[spec.name] = spec.key
        self._columns[spec.name] = columns
        self._generated[spec.name] = generated
        stale = [
            f.name
            for f in spec.schema
            if (f.metadata or {}).get(b"pg_generated") and f.name in columns
            and f.name not in generated
        ]  # fmt: skip
        if stale:
            log.warning(
                "%s: %s generated at the source but not here: the stream never carries "
                "generated columns (before Postgres 18), so they are not written; make them "
                "GENERATED ALWAYS AS (…) STORED as at the source",
                spec.name, ", ".join(stale),
            )  # fmt: skip
        typed = await self._typed(conn, schema, table, spec, columns)
        fields = []
        for field in spec.schema:
            field = typed.get(field.name, field)
            if field.name in columns:
                meta = dict(field.metadata or {})
                meta[b"pg_type"] = columns[field.name].encode()
                fields.append(field.with_metadata(meta))
        return TableSpec(spec.name, spec.key, pa.schema(fields, metadata=spec.schema.metadata))

    async def _typed(
        self,
        conn: psycopg.AsyncConnection,
        schema: str,
        table: str,
        spec: TableSpec,
        columns: dict[str, str],
    ) -> dict[str, pa.Field]:
        """Fields of ``spec`` typed null (a batch that carried no value of them, such as a
        Mongo batch of deletes, which name only ``_id``) given the existing column's type:
        the rows read back for them must hold its values, and hash as other batches' do."""
        nulls = [f.name for f in spec.schema if pa.types.is_null(f.type) and f.name in columns]
        if not nulls:
            return {}
        from syncengine.sources.postgres.columns import pg_type

        try:
            found = await ddl.column_type_ids(conn, schema, table, nulls)
        except psycopg.Error as exc:
            raise translate(exc, f"reading the column types of {spec.name}") from None
        return {
            name: spec.schema.field(name).with_type(pg_type(oid, typmod).arrow)
            for name, (oid, typmod) in found.items()
        }

    async def _grow(
        self, conn: psycopg.AsyncConnection, schema: str, table: str, spec: TableSpec
    ) -> tuple[dict[str, str], bool]:
        """The table's columns once created or grown, and whether it was created without its
        key index (built after the load: keylater.py)."""
        await self._lock_table(conn, schema, table)
        columns = await ddl.existing_columns(conn, schema, table)
        local = TableSpec(table, spec.key, spec.schema)
        if columns is None:
            await conn.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
            )
            types = await usertypes.column_types(conn, schema, list(spec.schema))
            later = self._keys_after_load and bool(spec.key)
            await evolve.create_table(conn, schema, local, types, later)
            if later:
                await keylater.mark(conn, schema, table, self.pipeline)
            return await ddl.existing_columns(conn, schema, table) or {}, later
        missing = [f for f in spec.schema if f.name not in columns]
        if missing and self.config.on_schema_change == "fail":
            names = ", ".join(f.name for f in missing)
            raise FatalError(
                f"target table {spec.name} lacks column(s) {names}",
                hint="add them, or set target.on_schema_change: add | ignore",
            )
        if missing and self.config.on_schema_change == "add":
            types = await usertypes.column_types(conn, schema, missing)
            for field in missing:
                await evolve.add_column(conn, schema, table, field, types.get(field.name))
            columns = await ddl.existing_columns(conn, schema, table) or {}
        if self.config.on_schema_change == "add":
            await usertypes.add_labels(conn, schema, list(spec.schema), columns)
            if await jsonpromote.promote_fields(conn, schema, table, spec, columns, self.pipeline):
                columns = await ddl.existing_columns(conn, schema, table) or {}
        if self.config.on_schema_change == "add" and await evolve.widen(
            conn, schema, table, spec, columns
        ):
            columns = await ddl.existing_columns(conn, schema, table) or {}
        absent_key = [k for k in spec.key if k not in columns]
        if not spec.key:  # keyless: rows are matched by their whole image, no index needed
            return columns, False
        if spec.name in self._pending_keys:  # created by this process; built after its load
            return columns, True
        # created without its key by a run that did not get to build it (a crash): build it
        # now, before a resumed snapshot or the stream matches rows by key
        await keylater.build(conn, schema, table, spec.key)
        if absent_key or not await ddl.has_unique_key(conn, schema, table, spec.key):
            raise FatalError(
                f"target table {spec.name} has no primary key or unique index on "
                f"({', '.join(spec.key)})",
                hint="add one, or change the mapping's key",
            )
        return columns, False

    @staticmethod
    async def _lock_table(conn: psycopg.AsyncConnection, schema: str, table: str) -> None:
        """Serialise creating, growing and keying one table across processes (this
        transaction's advisory lock)."""
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{schema}.{table}",))

    # -- primary key after the load (keylater.py) -----------------------------------------

    def keys_after_load(self, on: bool) -> None:
        """While on, a keyed table this target creates gets its primary key only at
        :meth:`build_keys` (or before the first ordinary write to it); NOT NULL stays."""
        self._keys_after_load = on

    async def build_keys(self) -> None:
        """Build the key of every table this process created without it (its load is done)."""
        self._keys_after_load = False
        for name in list(self._pending_keys):
            await self._build_key(name)

    async def _build_key(self, name: str) -> None:
        key = self._pending_keys[name]
        conn = await self._connection()
        schema, table = self._split(name)
        try:
            async with conn.transaction():
                await self._lock_table(conn, schema, table)
                await keylater.build(conn, schema, table, key)
        except psycopg.Error as exc:
            raise translate(exc, f"building the primary key of {name}") from None
        del self._pending_keys[name]

    async def _exact(
        self, conn: psycopg.AsyncConnection, write: TableWrite, columns: dict[str, str]
    ) -> dict[str, str]:
        """``columns`` once every numeric column ``write`` sends a number it cannot hold
        exactly is widened (:mod:`.exact`; under ``on_schema_change: add``, else the
        table's types are the user's to choose)."""
        if self.config.on_schema_change != "add":
            return columns
        data, key = write.batch.data, write.spec.key
        if not exact.widenings(data, columns, key):
            return columns
        schema, table = self._split(write.spec.name)
        try:
            async with conn.transaction():
                await self._lock_table(conn, schema, table)
                # decided again on the types under the lock: another process may have widened
                current = await ddl.existing_columns(conn, schema, table) or {}
                for name in exact.widenings(data, current, key):
                    log.warning(
                        "%s.%s: an integer %s cannot hold exactly arrived; the column becomes "
                        "numeric",
                        write.spec.name, name, current[name],
                    )  # fmt: skip
                    await exact.alter_type(conn, schema, table, name, "numeric")
                columns = await ddl.existing_columns(conn, schema, table) or {}
        except psycopg.Error as exc:
            raise translate(exc, f"widening columns of {write.spec.name}") from None
        self._columns[write.spec.name] = columns
        return columns

    def json_columns(self, table: str) -> frozenset[str] | None:
        """The columns of ``table`` that hold JSON, as this process last saw them (the
        pipeline carries a typed Mongo field headed for one as JSON: runtime/jsonfields.py);
        None when it has not seen the table."""
        columns = self._columns.get(table)
        if columns is None:
            return None
        return frozenset(c for c, t in columns.items() if t in jsonpromote.JSON_TYPES)

    def _writable(self, table: str, columns: dict[str, str]) -> dict[str, str]:
        """``columns`` without the generated ones: Postgres computes them, and a write that
        names one is refused."""
        generated = self._generated.get(table)
        if not generated:
            return columns
        return {c: t for c, t in columns.items() if c not in generated}

    async def _known(self, spec: TableSpec) -> dict[str, str]:
        """The table's columns, ensuring the table first when unseen or grown."""
        columns = self._columns.get(spec.name)
        wanted = set(spec.schema.names)
        if columns is None or (
            self.config.on_schema_change != "ignore" and not wanted <= set(columns)
        ):
            await self.ensure_table(spec)
            columns = self._columns[spec.name]
        return columns

    # -- raw chunk passthrough (syncengine.passthrough.RawChunkImport) --------------------

    def accepts_raw_chunks(self, fmt: str) -> bool:
        """The Postgres source's binary COPY chunks (the sink checks each table's types); not
        under a replication origin (the sink's own connections would not carry it)."""
        from syncengine.sources.postgres.passthrough import BINARY_COPY

        return fmt == BINARY_COPY and not self.config.replication_origin

    async def chunk_sink(self, tables: dict[str, str]) -> BinaryCopySink:
        """Where snapshot chunks of ``tables`` (source table → target table, created) can
        go as binary COPY, each committed with its done-mark (see passthrough.py)."""
        from syncengine.targets.postgres.passthrough import BinaryCopySink

        conn = await self._connection()
        names = {source: self._split(target) for source, target in tables.items()}
        try:
            sink = await BinaryCopySink.open(self.pipeline, self.config, conn, names)
        except psycopg.Error as exc:
            raise translate(exc, "reading target tables for snapshot chunks") from None
        sink.epoch = self.epoch
        return sink

    # -- reads ----------------------------------------------------------------------------

    async def read_rows(self, spec: TableSpec, keys: pa.Table) -> pa.Table:
        conn = await self._connection()
        columns = await self._known(spec)
        schema, table = self._split(spec.name)
        try:
            return await read_rows(
                conn,
                schema,
                TableSpec(table, spec.key, spec.schema),
                keys,
                columns,
                lock=self._in_group(conn),
            )
        except psycopg.Error as exc:
            raise translate(exc, f"reading {spec.name}") from None

    async def read_commit_times(self, spec: TableSpec, keys: pa.Table) -> pa.Table:
        """Key columns, ``_ts`` (when each row was last committed) and ``_mine`` (by this
        direction's own apply): the ``timestamp`` strategy's local versions in two-way
        pipelines (:mod:`syncengine.conflicts.versions`)."""
        conn = await self._connection()
        columns = await self._known(spec)
        schema, table = self._split(spec.name)
        local = TableSpec(table, spec.key, spec.schema)
        try:
            return await read_commit_times(
                conn, schema, local, keys, columns, self._origins, lock=self._in_group(conn)
            )
        except psycopg.Error as exc:
            raise translate(exc, f"reading commit times of {spec.name}") from None

    async def read_versions(self, table: str, row_keys: list[str]) -> pa.Table:
        """The versions this direction recorded for these keys (:mod:`.versions`)."""
        conn = await self._connection()
        try:
            return await versions.read(conn, versions_name(self.pipeline), table, row_keys)
        except psycopg.Error as exc:
            raise translate(exc, f"reading versions of {table}") from None

    async def read_own_versions(self, table: str, row_keys: list[str]) -> pa.Table:
        """The versions of what this direction itself last wrote to these keys: in a mesh
        recorded apart from the node's (:func:`read_versions`), which any direction into the
        node replaces; in a pair the same."""
        if not self.in_mesh:
            return await self.read_versions(table, row_keys)
        conn = await self._connection()
        try:
            return await versions.read(conn, self.pipeline, table, row_keys)
        except psycopg.Error as exc:
            raise translate(exc, f"reading versions of {table}") from None

    async def scan(self, spec: TableSpec) -> AsyncIterator[pa.Table]:
        """Every row in key order (for ``verify`` and a table sweep), streamed in chunks;
        through COPY, parsed off the event loop, when every column's type allows it."""
        from syncengine.targets.postgres.copyscan import scan_copy, vectorized

        columns = await self._known(spec)
        schema, table = self._split(spec.name)
        local = TableSpec(table, spec.key, spec.schema)
        fields = [f for f in spec.schema if f.name in columns]
        read = scan_copy if vectorized(fields, columns) else scan
        try:
            async for chunk in read(
                self.config.dsn.get_secret_value(), schema, local, columns, 50_000
            ):
                yield chunk
        except psycopg.Error as exc:
            raise translate(exc, f"scanning {spec.name}") from None

    async def holds_rows(self, table: str) -> bool:
        """Whether ``table`` exists with a row, on a connection of its own: the stream's may
        be inside a group's transaction when a table snapshot asks."""
        schema, name = self._split(table)
        try:
            async with await psycopg.AsyncConnection.connect(
                self.config.dsn.get_secret_value(), autocommit=True
            ) as conn:
                return await ddl.holds_rows(conn, schema, name)
        except psycopg.errors.UndefinedTable:
            return False
        except psycopg.Error as exc:
            raise translate(exc, f"looking for rows in {table}") from None

    async def read_shadow(self, table: str, row_keys: Sequence[str]) -> pa.Table:
        conn = await self._connection()
        try:
            return await self._store.read_shadow(conn, table, row_keys)
        except psycopg.Error as exc:
            raise translate(exc, "reading shadow rows") from None

    async def shadow_kept(self, table: str) -> str | None:
        """How the shadow of ``table`` was last kept (syncengine.conflicts.switch)."""
        conn = await self._connection()
        try:
            return await rebuild.read_kept(conn, self.pipeline, table)
        except psycopg.Error as exc:
            raise translate(exc, "reading how the shadow is kept") from None

    async def keep_shadow(
        self, table: str, kept: str, rows: AsyncIterator[pa.Table] | None, stream: str | None
    ) -> None:
        """Record how the shadow of ``table`` is kept from now on, rebuilt from ``rows`` first
        when given (one transaction: a crash leaves the old record, so it is rebuilt again)."""
        conn = await self._connection()
        try:
            async with conn.transaction():
                n = await rebuild.keep(conn, self.pipeline, table, kept, rows, stream)
        except psycopg.Error as exc:
            raise translate(exc, "rebuilding the shadow") from None
        if n and self._analyze.due(n):
            await self._analyze_shadow(conn)

    async def get_checkpoint(self, stream: str) -> str | None:
        conn = await self._connection()
        try:
            return await self._store.read_checkpoint(conn, stream)
        except psycopg.Error as exc:
            raise translate(exc, "reading the checkpoint") from None

    async def reset_checkpoint(self, stream: str) -> None:
        conn = await self._connection()
        try:
            async with conn.transaction():
                await self._store.delete_checkpoint(conn, stream)
        except psycopg.Error as exc:
            raise translate(exc, "resetting the checkpoint") from None

    async def forget_table(self, table: str, targets: Sequence[str]) -> dict[str, int]:
        """Remove a source table's state from ``_syncengine`` (``checkpoints remove``)."""
        from syncengine.targets.postgres.forget import forget_table

        conn = await self._connection()
        try:
            async with conn.transaction():
                return await forget_table(conn, self.pipeline, table, targets)
        except psycopg.Error as exc:
            raise translate(exc, "removing the table's state") from None

    # -- apply ----------------------------------------------------------------------------

    async def apply(
        self, writes: Sequence[TableWrite], checkpoint: Checkpoint | None
    ) -> ApplyResult:
        """Data, shadow and checkpoint in one transaction (see apply.py for the steps)."""
        conn = await self._connection()
        for write in writes:  # ON CONFLICT and key probes need the key: built first
            if write.spec.name in self._pending_keys:
                await self._build_key(write.spec.name)
        known = [
            self._writable(w.spec.name, await self._exact(conn, w, await self._known(w.spec)))
            for w in writes
        ]
        # a group's own transaction is tried without a savepoint per statement; a bad row
        # aborts it and the group is applied again with them, bisecting to the row (apply.py)
        owned = conn.pgconn.transaction_status == IDLE
        optimistic = ROW_SAVEPOINTS.set(not owned)
        try:
            try:
                result, recorded = await self._apply_once(conn, writes, checkpoint, known)
            except psycopg.Error as exc:
                if not owned or conn.closed or not is_record_error(exc):
                    raise
                log.debug("a row was refused (%s): applying the group again, row by row", exc)
                if exc.sqlstate == fkorder.VIOLATION:
                    self._foreign_keys.forget()  # a key added since they were read
                ROW_SAVEPOINTS.set(True)
                result, recorded = await self._apply_once(conn, writes, checkpoint, known)
            if conn.pgconn.transaction_status != IDLE:
                await conn.execute("COMMIT")  # the group's transaction (start_group)
            self._staging.committed()
        except psycopg.Error as exc:
            if not conn.closed and conn.pgconn.transaction_status != IDLE:
                with contextlib.suppress(psycopg.Error):
                    await conn.execute("ROLLBACK")
            error = translate(exc, "apply")
            if error.retriable:
                await self.close()
            raise error from None
        finally:
            ROW_SAVEPOINTS.reset(optimistic)
        fault_point("postgres.after_commit")
        if self._analyze.due(recorded):
            await self._analyze_shadow(conn)
        return result

    async def _apply_once(
        self,
        conn: psycopg.AsyncConnection,
        writes: Sequence[TableWrite],
        checkpoint: Checkpoint | None,
        known: Sequence[dict[str, str]],
    ) -> tuple[ApplyResult, int]:
        """One attempt at :meth:`apply`'s transaction (committed by it, unless a group
        transaction is open); returns what it did and how many shadow rows it recorded."""
        result = ApplyResult()
        recorded = 0
        top: str | None = None  # the highest position a shadow row is written with
        self._staging.begin()
        async with conn.transaction():
            if self.shared_tables:  # before any read: see beside.py
                await beside.lock_shared(conn, self.pipeline, writes, self.shared_tables)
            floors = await floor.read(conn, self.pipeline, writes)
            edges = fkorder.Edges()
            if len(writes) > 1:  # the order the target's foreign keys need (fkorder.py)
                names = {w.spec.name: self._split(w.spec.name) for w in writes}
                edges = await self._foreign_keys.edges(conn, names)
            for index, write in fkorder.ordered(writes, edges):
                columns = known[index]
                schema, table = self._split(write.spec.name)
                request = write.shadow.fence
                write = floor.below_floor(write, floors.floor(request))
                local = TableWrite(
                    TableSpec(table, write.spec.key, write.spec.schema),
                    write.batch,
                    write.shadow,
                )
                before = len(result.rejected)
                if write.spec.key:
                    applied = await apply_write(
                        conn,
                        schema,
                        local,
                        columns,
                        result,
                        (self.pipeline, write.spec.name),
                        self._staging,
                        floors.probe(request),
                        floors.record_above(request, checkpoint),
                    )
                else:  # keyless: no per-key fence (syncengine.keyless fences the table)
                    done = await apply_keyless(conn, schema, local, columns, result)
                    applied = Applied(*done)
                # refused rows name the table as the pipeline does, not as the SQL does
                result.rejected[before:] = [
                    (write.spec.name, row, why) for _, row, why in result.rejected[before:]
                ]
                fault_point("postgres.after_data")
                shadow = without_rejected(write, applied.refused)
                recorded += shadow.shadow.upserts.num_rows if shadow.shadow.upserts else 0
                if write.spec.key:  # a keyless table's fence is its own (keyless.py)
                    top = max_position(top, floor.highest_position(shadow))
                truncated = (write.spec.name,) if applied.truncated else ()
                await self._store.write_shadow(conn, [shadow], truncated)
                recorded_versions = shadow.shadow.versions  # not those of refused rows
                if recorded_versions is not None:
                    await versions.record(
                        conn, versions_name(self.pipeline), write.spec.name, recorded_versions
                    )
                    if self.in_mesh:  # this direction's own writes too: replays
                        await versions.record(
                            conn, self.pipeline, write.spec.name, recorded_versions
                        )
                if self.in_mesh:
                    await self._note_tombstones(conn, shadow)
                n, fenced_top = await applied.record_fence(
                    conn, self.pipeline, write.spec.name, write,
                    floors.record_above(request, checkpoint),
                )  # fmt: skip
                recorded += n
                top = max_position(top, fenced_top)
            if top is not None and (floors.mark is None or top > floors.mark):
                await floor.raise_mark(conn, self.pipeline, top)
            fault_point("postgres.after_shadow")
            if self.config.replication_origin:
                await origin.mark_transaction(conn, checkpoint, writes)
            if checkpoint is not None:
                await self._store.write_checkpoint(conn, checkpoint)
                if self._purges.due(checkpoint):
                    await self._store.purge_tombstones(conn, checkpoint.position)
            fault_point("postgres.before_commit")
            if self.epoch is not None:  # last: the epoch row is locked until the commit
                await epochs.hold(conn, self.fence, self.epoch)
        return result, recorded

    async def _analyze_shadow(self, conn: psycopg.AsyncConnection) -> None:
        """Fresh planner statistics for the shadow after it grew a lot (autovacuum lags a
        bulk load, and the fence joins are planned from these numbers)."""
        try:
            await conn.execute(sql.SQL("ANALYZE {}").format(ddl.state_table("shadow")))
        except psycopg.Error as exc:  # statistics are an optimisation: never fail a commit
            log.info("ANALYZE of the shadow failed: %s", exc)


def max_position(a: str | None, b: str | None) -> str | None:
    """The later of two positions (None: none)."""
    if a is None or b is None:
        return a if b is None else b
    return max(a, b)
