"""Records the state store keeps, and the StateStore protocol every backend satisfies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


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


class StateStore(Protocol):
    """What the runtime needs from a state backend (SQLite by default)."""

    def get_checkpoint(self, pipeline: str, stream: str) -> StoredCheckpoint | None: ...

    def put_checkpoint(
        self, pipeline: str, stream: str, position: str, details: dict[str, Any] | None = None
    ) -> None: ...

    def list_checkpoints(self, pipeline: str | None = None) -> list[StoredCheckpoint]: ...

    def reset_checkpoints(self, pipeline: str, stream: str | None = None) -> int: ...

    def put_chunks(self, pipeline: str, chunks: Any) -> None: ...

    def get_chunks(self, pipeline: str, table: str | None = None) -> list[Chunk]: ...

    def add_dead_letters(self, letters: Any) -> int: ...

    def list_dead_letters(
        self, pipeline: str | None = None, include_replayed: bool = False
    ) -> list[DeadLetter]: ...
