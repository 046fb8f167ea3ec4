"""State: checkpoints, snapshot chunk progress, shadow rows, conflict queue, dead letters.

Callers type their ``state`` with the small protocol they use (:mod:`.protocols`);
:func:`open_state` is the one place that picks the implementation.
"""

from __future__ import annotations

from pathlib import Path

from syncengine.state.base import Chunk, Conflict, DeadLetter, StoredCheckpoint
from syncengine.state.protocols import (
    CheckpointStore,
    ConflictQueue,
    DeadLetters,
    Locks,
    PipelineStatus,
    ShadowStore,
    SnapshotProgress,
    SourceState,
    StateStore,
    StateTransaction,
    TargetState,
    Transactional,
)
from syncengine.state.sqlite import SQLiteStateStore


def open_state(path: str | Path) -> StateStore:
    """The state store a config's ``state:`` names: a ``postgresql://`` URL is the shared
    store (:mod:`syncengine.state.postgres`), anything else the embedded SQLite file."""
    if is_shared(path):
        from syncengine.state.postgres import PostgresStateStore

        return PostgresStateStore(str(path))
    return SQLiteStateStore(path)


def is_shared(path: str | Path) -> bool:
    """Whether ``state:`` names a database every process reaches rather than a local file."""
    return str(path).startswith(SHARED_SCHEMES)


#: the URL schemes of a shared (Postgres) state store
SHARED_SCHEMES = ("postgresql://", "postgres://")


__all__ = [
    "CheckpointStore",
    "Chunk",
    "Conflict",
    "ConflictQueue",
    "DeadLetter",
    "DeadLetters",
    "Locks",
    "PipelineStatus",
    "SQLiteStateStore",
    "ShadowStore",
    "SnapshotProgress",
    "SourceState",
    "StateStore",
    "StateTransaction",
    "StoredCheckpoint",
    "TargetState",
    "Transactional",
    "is_shared",
    "open_state",
]
