"""Records the state store keeps (what each concern reads and writes is in
:mod:`syncengine.state.protocols`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StoredCheckpoint:
    """A checkpoint as the state store keeps it: the position of one pipeline's source stream
    with its details, format version and time. (What a target commits with a group is
    :class:`syncengine.targets.base.Checkpoint`, the stream and position only.)"""

    pipeline: str
    stream: str
    position: str
    details: dict[str, Any] = field(default_factory=dict)
    version: int = 1
    updated_at: str | None = None


@dataclass(frozen=True)
class Chunk:
    """One key range of a snapshot; ``status`` is ``pending`` or ``done``."""

    table: str
    chunk: int
    lower: str | None
    upper: str | None
    status: str = "pending"
    rows: int = 0


@dataclass(frozen=True)
class Conflict:
    id: int | None
    pipeline: str
    table: str
    key: str
    base: str | None
    local: str | None
    remote: str | None
    delta: str | None
    status: str = "pending"
    created_at: str | None = None
    resolved_at: str | None = None
    resolution: str | None = None
    decided_by: str | None = None


@dataclass(frozen=True)
class DeadLetter:
    pipeline: str
    table: str
    stage: str
    reason: str
    payload: str
    position: str | None = None
    id: int | None = None
    created_at: str | None = None
    replayed_at: str | None = None
    #: position of a later change of the same key (replaying this one would undo it)
    superseded: str | None = None


@dataclass(frozen=True)
class Pause:
    """A paused table: ``status`` pausing (asked), paused, or resuming (asked to release)."""

    table: str
    status: str
    held_through: str | None
    held_rows: int = 0
    requested_at: str | None = None
    paused_at: str | None = None


@dataclass(frozen=True)
class HeldBatch:
    """One source batch a pause holds: its id (the order), last position and Arrow IPC bytes."""

    id: int
    position: str
    payload: bytes


@dataclass(frozen=True)
class TableStats:
    """A source table's running counters for ``status --tables``."""

    table: str
    rows_applied: int
    last_change_at: str | None
    last_lag_seconds: float | None
    updated_at: str | None = None


@dataclass(frozen=True)
class LagSample:
    """What the daemon saw of one pipeline (``table`` empty) or one source table at ``at``
    (Unix seconds): its lag, and the changes applied since the previous sample. Bytes only
    where the source measures them (a Postgres slot's WAL)."""

    at: float
    table: str = ""
    lag_seconds: float | None = None
    lag_bytes: int | None = None
    retained_wal_bytes: int | None = None
    applied: int = 0


@dataclass(frozen=True)
class TableRequest:
    """An operation on one table of a running pipeline (``resnapshot``), left in the state
    store for the daemon that holds the pipeline (or run in the foreground without one).
    ``status``: ``pending`` until a snapshot of the table starts, ``running`` (resumed per chunk
    after a crash), then ``done`` or ``failed`` with ``error``."""

    id: int
    pipeline: str
    table: str
    kind: str
    where: str | None = None
    status: str = "pending"
    error: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    #: the target held no row of the table when its snapshot began (None: not known), so no
    #: key can be left there that the source lacks: no sweep after the copy
    target_empty: bool | None = None


def table_chunks(pipeline: str) -> str:
    """The name a pipeline's single-table snapshots keep their chunk progress under, apart from
    its backfill's (whose leftover chunks mean "an unfinished backfill")."""
    return f"{pipeline}/tables"
