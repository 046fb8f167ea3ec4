"""State: checkpoints, snapshot chunk progress, shadow rows, conflict queue, dead letters."""

from syncengine.state.base import Chunk, Conflict, DeadLetter, StateStore, StoredCheckpoint
from syncengine.state.sqlite import SQLiteStateStore

__all__ = ["Chunk", "Conflict", "DeadLetter", "SQLiteStateStore", "StateStore", "StoredCheckpoint"]
