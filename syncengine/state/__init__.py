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
    """The state store a config's ``state:`` names: the embedded SQLite file."""
    return SQLiteStateStore(path)


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
    "open_state",
]
