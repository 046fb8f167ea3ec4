"""State: checkpoints, snapshot chunk progress, shadow rows, conflict queue, dead letters."""

from syncengine.state.base import Checkpoint, Chunk, Conflict, DeadLetter, StateStore
from syncengine.state.sqlite import SQLiteStateStore

__all__ = ["Checkpoint", "Chunk", "Conflict", "DeadLetter", "SQLiteStateStore", "StateStore"]
