"""The contract between the runtime, conflict handling and every target.

The runtime hands a target *compacted, mapped* batches (one per target table; row keys
unique within a batch) and the checkpoint to store with them. A target applies them
set-wise and idempotently: applying the same writes twice leaves the same state.

Targets that keep state (``keeps_state``: Postgres) write the checkpoint and the shadow rows in
the same transaction as the data (exactly-once effect). The others write data first, then
shadow and checkpoint to the SQLite state store (at-least-once, replay-safe).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from syncengine.changes import ChangeBatch


@dataclass(frozen=True)
class TableSpec:
    """A target table/collection: its name, key and the mapped column schema.

    ``schema`` holds data columns only; field metadata may carry the source type
    (``pg_type``, ``bson_type``) so a target can pick an exact column type.
    """

    name: str
    key: tuple[str, ...]
    schema: pa.Schema


@dataclass(frozen=True)
class ServerFence:
    """The position fence, enforced by the target on the server (``server_fence`` targets)
    for a strategy that reads nothing back (``remote``): the target drops the changes at or
    before their key's stored position in the statements that apply the data, then stores the
    positions of what it applied as slim shadow rows (no hash, no base; a delete leaves a
    tombstone). No row travels to the engine and back."""

    #: the canonical row key of every non-truncate row of the write's batch, in order
    row_keys: pa.Array
    #: drop stale changes (not in a batch that truncates first: its shadow is cleared) and
    #: leave tombstones, for sources whose positions sort; False: only record, and a delete
    #: removes its key's shadow row
    enforce: bool
    #: record the positions of snapshot (``r``) rows too. False when every such row is at the
    #: position the stream resumes from (an exported snapshot): nothing at or before it can be
    #: delivered later, so a per-row fence would never drop anything
    snapshot_rows: bool = True
    #: the source stream whose stored checkpoint is this write's floor: a change (not a
    #: snapshot row) at or below it is dropped, since a Postgres target committed it with that
    #: checkpoint. None: no floor (positions that do not sort; a dead-letter replay, whose
    #: changes sit below the checkpoint by construction)
    stream: str | None = None
    #: record a stream change's position only where a replay can reach it: above the checkpoint
    #: committed with it (parts of a source transaction committed before its end). False for
    #: snapshot batches (a re-backfill moves the checkpoint back below their positions)
    sparse: bool = False
    #: rows at or below this position keep no fence row (``SETTLED``: a live table copy's rows
    #: whose keys' changes up to there the stream committed already; None: all are recorded)
    settled: str | None = None


@dataclass(frozen=True)
class ShadowUpdate:
    """What this pipeline now believes is in the target for a key (conflict detection)."""

    #: columns ``row_key`` (canonical JSON of the key values), ``row_hash`` (null: a tombstone,
    #: the key is deleted), ``base`` (JSON of the source's row; may be null), ``position`` (of
    #: the change the row reflects; may be null) and optionally ``fresh`` (true: the key had no
    #: shadow row when detection read the shadow, so a target may insert instead of upsert)
    upserts: pa.Table | None = None
    deletes: Sequence[str] = ()
    #: set instead of ``upserts``/``deletes`` when the target fences on the server
    fence: ServerFence | None = None
    #: two-way ``timestamp``: each written key's version (``row_key``, ``ts``, ``side``,
    #: ``deleted``), recorded with the row (syncengine.targets.postgres.versions)
    versions: pa.Table | None = None
    #: two-way ``timestamp`` into a target that keeps tombstones: the keys of the deletes that
    #: found no row, recorded as versions or not (one no newer than the version the key holds
    #: is not): a mesh node notes them for its sibling's reader (syncengine.tombstones)
    absent_deletes: Sequence[str] = ()


@dataclass(frozen=True)
class TableWrite:
    spec: TableSpec
    batch: ChangeBatch
    shadow: ShadowUpdate = field(default_factory=ShadowUpdate)


@dataclass(frozen=True)
class Checkpoint:
    """The source position a target commits with a group (the state store's record of it is
    :class:`syncengine.state.base.StoredCheckpoint`)."""

    stream: str
    position: str


@dataclass
class ApplyResult:
    upserted: int = 0
    deleted: int = 0
    truncated: int = 0
    #: rows rejected by the target (constraint violations, oversized): go to dead letters
    rejected: list[tuple[str, dict[str, object], str]] = field(default_factory=list)

    def merged(self, other: ApplyResult) -> ApplyResult:
        """Both results as one (a group applied in parts)."""
        return ApplyResult(
            self.upserted + other.upserted,
            self.deleted + other.deleted,
            self.truncated + other.truncated,
            [*self.rejected, *other.rejected],
        )


class Target(Protocol):
    keeps_state: bool
    #: True for targets that record changes rather than mirror rows (Parquet): conflict
    #: detection and echo suppression do not apply, every change is written
    change_log: bool
    # Optional ``server_fence = True`` (Postgres): the target accepts a :class:`ServerFence`;
    # the conflict step reads its ``getattr(target, "server_fence", False)``.
    # Optional ``grows_groups = True`` (Postgres): under a backlog the runner gives it groups
    # of up to ``GROUP_BATCHES × max_rows`` rows (``getattr(target, "grows_groups", False)``).
    # Optional ``generates_columns = True`` (Postgres): creates a Postgres source's generated
    # columns (``pg_generated``) as generated; elsewhere the pipeline warns that their values
    # go stale (the stream never carries them before Postgres 18).
    # Optional ``async holds_rows(table) -> bool`` (Postgres, Mongo): whether the target table
    # exists with at least one row, read on a connection of its own (a table snapshot taken
    # into an empty table needs no sweep, :mod:`syncengine.runtime.tableops`).
    # Optional ``async forget_table(table, targets) -> dict[str, int]`` (Postgres, Mongo): remove
    # what the target keeps itself for a removed source table (``checkpoints remove``); a target
    # that keeps no state of its own needs none (:mod:`syncengine.runtime.forget`).

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ensure_table(self, spec: TableSpec) -> TableSpec:
        """Create the table if missing, add new columns (on_schema_change); returns the
        spec as the target now has it."""
        ...

    async def read_rows(self, spec: TableSpec, keys: pa.Table) -> pa.Table:
        """Current target rows for these keys (missing keys absent), columns of ``spec``."""
        ...

    async def read_shadow(self, table: str, row_keys: Sequence[str]) -> pa.Table:
        """Shadow rows (``row_key``, ``row_hash``, ``base``, ``position``) for these keys; a
        tombstone has a null ``row_hash``."""
        ...

    async def apply(
        self, writes: Sequence[TableWrite], checkpoint: Checkpoint | None
    ) -> ApplyResult:
        """Apply every write and then store the checkpoint; atomically where possible."""
        ...

    async def get_checkpoint(self, stream: str) -> str | None: ...

    async def reset_checkpoint(self, stream: str) -> None:
        """Forget the stored position where the target keeps it (``checkpoints reset``)."""
        ...

    def scan(self, spec: TableSpec) -> AsyncIterator[pa.Table]:
        """Every row of the table, columns of ``spec`` typed as ``read_rows`` returns them
        (``verify`` compares this with the mapped source)."""
        ...
