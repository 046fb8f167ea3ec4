"""What each part of the engine needs from the state store, one small protocol per concern.

Callers name the protocol they use, never the SQLite class: a source needs checkpoints and
snapshot progress, a target that keeps no state of its own needs checkpoints and shadow rows,
the conflict resolver needs the queue. :class:`StateStore` is all of them together, what the
runtime carries from the place that opens the store (:func:`syncengine.state.open_state`) to
the parts. The embedded SQLite store (:mod:`syncengine.state.sqlite`) and the shared Postgres
store (:mod:`syncengine.state.postgres`) implement every one.

The ``write_*``, ``park_*``, ``hold_*`` and ``mark_resolved`` methods take the handle that
:meth:`Transactional.transaction` yields, so that writes of several concerns commit together
(a target's shadow rows with its checkpoint; a conflict's park, held changes and audit rows).
That handle is the store's own connection: these protocols describe the engine's state store.
A target that keeps its state in its own database (Postgres, Mongo with transactions) writes it
in its apply transaction through the async counterparts in :mod:`syncengine.state.targetdb`,
and answers for it through :class:`syncengine.targets.base.Target` (``read_shadow``,
``get_checkpoint``, ``reset_checkpoint``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from syncengine.state.base import (
    Chunk,
    Conflict,
    DeadLetter,
    HeldBatch,
    LagSample,
    Pause,
    StoredCheckpoint,
    TableRequest,
    TableStats,
)
from syncengine.state.locks import Lock
from syncengine.state.sql.base import StateTransaction as StateTransaction


class Transactional(Protocol):
    def transaction(self) -> AbstractContextManager[StateTransaction]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        ...


class CheckpointStore(Transactional, Protocol):
    """The source position of each pipeline stream, advanced only after the target committed."""

    def get_checkpoint(self, pipeline: str, stream: str) -> StoredCheckpoint | None: ...

    def put_checkpoint(
        self, pipeline: str, stream: str, position: str, details: dict[str, Any] | None = None
    ) -> None: ...

    def write_checkpoint(
        self,
        db: StateTransaction,
        pipeline: str,
        stream: str,
        position: str,
        details: dict[str, Any] | None = None,
    ) -> None: ...

    def list_checkpoints(self, pipeline: str | None = None) -> list[StoredCheckpoint]: ...

    def reset_checkpoints(
        self, pipeline: str, stream: str | None = None, keep: Sequence[str] = ()
    ) -> int:
        """Forget positions (and, for the whole pipeline, its snapshot progress, but not the
        streams named in ``keep``); how many."""
        ...


class SnapshotProgress(Protocol):
    """Which key-range chunks of a snapshot or backfill are planned and done (resumable)."""

    def put_chunks(self, pipeline: str, chunks: Iterable[Chunk]) -> None: ...

    def get_chunks(self, pipeline: str, table: str | None = None) -> list[Chunk]: ...

    def clear_chunks(self, pipeline: str, table: str | None = None) -> None: ...


class ShadowStore(Transactional, Protocol):
    """What the source last said per key (hash, base row) and its position (the fence)."""

    def get_shadow(
        self, pipeline: str, table: str, keys: Sequence[str]
    ) -> dict[str, tuple[str, str | None, str | None]]: ...

    def write_shadow(
        self,
        db: StateTransaction,
        pipeline: str,
        table: str,
        upserts: Iterable[tuple[str, str, str | None, str | None]],
        deletes: Iterable[str] = (),
    ) -> None: ...

    def clear_shadow(self, db: StateTransaction, pipeline: str, table: str) -> None:
        """Drop a table's shadow rows (it was truncated)."""
        ...

    def purge_tombstones(self, db: StateTransaction, pipeline: str, before: str) -> None: ...


class ConflictQueue(Transactional, Protocol):
    """Parked conflicts, the changes held behind them, and the audit of every decision."""

    def park_conflict(self, db: StateTransaction, conflict: Conflict) -> int: ...

    def list_conflicts(
        self, pipeline: str | None = None, status: str | None = "pending"
    ) -> list[Conflict]: ...

    def get_conflict(self, conflict_id: int) -> Conflict | None: ...

    def pending_conflict_keys(self, pipeline: str, table: str) -> dict[str, int]: ...

    def hold_changes(
        self,
        db: StateTransaction,
        pipeline: str,
        table: str,
        held: Iterable[tuple[int, str, str]],
    ) -> None: ...

    def held_changes(self, conflict_id: int, pipeline: str | None = None) -> list[str]: ...

    def mark_resolved(
        self, db: StateTransaction, conflict_id: int, resolution: str, decided_by: str
    ) -> None: ...

    def write_audit(
        self,
        db: StateTransaction,
        pipeline: str,
        table: str,
        rows: Iterable[tuple[str, str, str, str]],
    ) -> None: ...


class DeadLetters(Protocol):
    """Records that could not be mapped or applied, with the reason, until replayed."""

    def add_dead_letters(self, letters: Iterable[DeadLetter]) -> int: ...

    def list_dead_letters(
        self, pipeline: str | None = None, include_replayed: bool = False
    ) -> list[DeadLetter]: ...

    def mark_replayed(self, ids: Iterable[int]) -> None: ...

    def mark_superseded(self, marks: Iterable[tuple[int, str]]) -> None:
        """(letter id, position of the later change of its key) for each superseded letter."""
        ...


class PipelineStatus(Protocol):
    """What ``status`` shows without connecting: stored totals and the open-work counts."""

    def get_status(self, pipeline: str) -> dict[str, Any]: ...

    def put_status(self, pipeline: str, status: dict[str, Any]) -> None: ...

    def counts(self, pipeline: str) -> dict[str, int]: ...

    def beat_applier(self, pipeline: str, holder: str, at: float) -> None:
        """A cluster stream attempt says it applies ``pipeline`` now (``at``: Unix time),
        on every heartbeat: how the CLI, on any machine, knows to hand it per-table work."""
        ...

    def applier(self, pipeline: str) -> tuple[str, float] | None:
        """(holder, Unix time of its last beat) of the cluster stream attempt that last said
        it applies ``pipeline``; None when none ever did or it ended."""
        ...

    def end_applier(self, pipeline: str, holder: str) -> None:
        """The attempt ``holder`` stopped applying (another's beat is left alone)."""
        ...


class TableStatus(Protocol):
    """Per source table counters (``status --tables``), added per applied group."""

    def add_table_stats(
        self, pipeline: str, groups: Mapping[str, tuple[int, str | None, float | None]]
    ) -> None: ...

    def table_stats(self, pipeline: str) -> dict[str, TableStats]: ...

    def table_counts(self, pipeline: str) -> dict[str, dict[str, int]]: ...


class LagHistory(Protocol):
    """The lag the daemon saw, sampled at a fixed interval and kept for a day: what the
    console's chart reads (:mod:`syncengine.runtime.laghistory` writes it)."""

    def add_lag_samples(
        self, pipeline: str, samples: Iterable[LagSample], keep_seconds: float, now: float
    ) -> None:
        """Add samples and drop the pipeline's samples older than ``now - keep_seconds``; a
        commit that need not survive a power loss (no fsync)."""
        ...

    def lag_samples(
        self, pipeline: str, since: float, table: str | None = ""
    ) -> list[LagSample]: ...


class TablePauses(Transactional, Protocol):
    """Paused tables and the changes they hold (in the conflict queue's held changes), until
    they are released in order on resume (:mod:`syncengine.runtime.pausing`)."""

    def request_pause(self, pipeline: str, tables: Iterable[str], status: str) -> None: ...

    def request_resume(self, pipeline: str, tables: Iterable[str] | None) -> list[str]: ...

    def pauses(self, pipeline: str) -> dict[str, Pause]: ...

    def confirm_pauses(self, pipeline: str) -> list[str]: ...

    def hold_batches(
        self,
        db: StateTransaction,
        pipeline: str,
        table: str,
        batches: Sequence[tuple[str, int, bytes]],
    ) -> None: ...

    def held_batches(self, pipeline: str, table: str, limit: int) -> list[HeldBatch]: ...

    def release_batches(
        self, db: StateTransaction, pipeline: str, table: str, ids: Sequence[int], rows: int
    ) -> None: ...

    def finish_resume(self, db: StateTransaction, pipeline: str, table: str) -> bool: ...

    def held_totals(self, pipeline: str) -> dict[str, tuple[int, int]]: ...


class TableRequests(Protocol):
    """Per-table operations asked of a pipeline (``resnapshot``), handed from the CLI to the
    daemon that holds the pipeline's lock."""

    def request_table(self, pipeline: str, table: str, kind: str, where: str | None) -> int:
        """Ask for ``kind`` on ``table``; an open request of the same kind for the table is
        returned instead of a second one. Returns the request id."""
        ...

    def table_requests(self, pipeline: str, open_only: bool = True) -> list[TableRequest]: ...

    def update_table_request(
        self,
        request_id: int,
        status: str,
        error: str | None = None,
        target_empty: bool | None = None,
    ) -> None:
        """``target_empty``: noted when the snapshot starts (None leaves what is noted)."""
        ...

    def applied_tables(self, pipeline: str) -> list[str] | None:
        """The source tables the config last applied to a cluster stream named (``apply``);
        None before the first apply."""
        ...

    def set_applied_tables(self, pipeline: str, tables: list[str]) -> None: ...

    def captured_tables(self, pipeline: str) -> dict[str, str | None] | None:
        """The source tables the pipeline's stream captures, each with what the source says
        it is (a Postgres table's OID; None: not known), as its last start noted them
        (:mod:`syncengine.runtime.captured`); None before the first note."""
        ...

    def set_captured_tables(self, pipeline: str, tables: dict[str, str | None]) -> None: ...


class TableForgetting(Protocol):
    """Removing the state of a table the pipeline no longer reads (``checkpoints remove``)."""

    def forget_table(
        self, pipeline: str, table: str, targets: Sequence[str], keep_request: int | None = None
    ) -> dict[str, int]:
        """Delete ``table``'s state and, per target table in ``targets``, its shadow rows and
        conflicts, in one transaction (``keep_request``: a request row to leave); counts."""
        ...


class Locks(Protocol):
    def lock(self, pipeline: str, purpose: str) -> Lock:
        """An exclusive per-pipeline lock (daemon, sync and backfill refuse to overlap)."""
        ...


class SourceState(CheckpointStore, SnapshotProgress, Protocol):
    """What a source reader keeps: its stream positions and its snapshot progress."""


class TargetState(CheckpointStore, ShadowStore, Protocol):
    """What a target that keeps no state of its own puts in the store: checkpoint and shadow
    rows, committed together (:func:`syncengine.targets.shadow.commit_to_sqlite`)."""


class StateStore(
    SourceState,
    TargetState,
    ConflictQueue,
    DeadLetters,
    PipelineStatus,
    TableStatus,
    LagHistory,
    TablePauses,
    TableRequests,
    TableForgetting,
    Locks,
    Protocol,
):
    """Every concern together: what the runtime and the CLI carry to the parts."""
