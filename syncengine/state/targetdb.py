"""The state a target keeps in its own database, one small async protocol per concern.

A target that can commit its state with its data (Postgres; Mongo with transactions) keeps
checkpoints, shadow rows and snapshot chunk marks in its own database and writes them inside its
apply transaction: the source position, what conflict detection compares against and the rows
become visible together or not at all. These are the async counterparts of
:mod:`syncengine.state.protocols` (the embedded SQLite store), and the target-database
implementations (:class:`syncengine.targets.postgres.state.PostgresTargetState`,
:class:`syncengine.targets.mongo.state.MongoTargetState`) satisfy them; the targets and the
snapshot passthrough name the protocol, never the class.

Every method takes ``db``, the handle of the target's session (a Postgres connection, a Mongo
session with its database): a write joins the transaction open on it, so the caller alone
draws the transaction's boundaries, and a read outside one sees what is committed. An
implementation is bound to one pipeline.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    import pyarrow as pa

    from syncengine.state.base import Chunk
    from syncengine.targets.base import Checkpoint, TableWrite

#: the target's session handle, only passed back to the state's methods
Handle = TypeVar("Handle", contravariant=True)


class TargetCheckpoints(Protocol[Handle]):
    """The source position of each stream, written with the data it follows."""

    async def read_checkpoint(self, db: Handle, stream: str) -> str | None: ...

    async def write_checkpoint(self, db: Handle, checkpoint: Checkpoint) -> None: ...

    async def delete_checkpoint(self, db: Handle, stream: str) -> None:
        """Forget a stream's position (``checkpoints reset``)."""
        ...


class TargetShadow(Protocol[Handle]):
    """What the source last said per key and its position (the fence), per target table."""

    async def read_shadow(self, db: Handle, table: str, row_keys: Sequence[str]) -> pa.Table:
        """Shadow rows (``row_key``, ``row_hash``, ``base``, ``position``) of these keys; a
        tombstone has a null ``row_hash``."""
        ...

    async def write_shadow(
        self,
        db: Handle,
        writes: Sequence[TableWrite],
        truncated: Collection[str],
        *,
        fresh: bool = True,
    ) -> None:
        """The writes' shadow changes; the tables named in ``truncated`` lose their rows first.
        ``fresh``: insert the keys detection found no shadow row for instead of upserting them
        (False after such an insert met a row: a retried batch)."""
        ...

    async def purge_tombstones(self, db: Handle, before: str) -> None:
        """Drop tombstones older than the checkpoint ``before``: a replay starts after it."""
        ...


class TargetSnapshotProgress(Protocol[Handle]):
    """Done-marks of snapshot chunks committed with their rows (the binary passthrough)."""

    async def mark_done(self, db: Handle, chunk: Chunk, rows: int) -> None: ...

    async def done_chunks(self, db: Handle, tables: Sequence[str]) -> list[Chunk]: ...

    async def forget_chunks(self, db: Handle, tables: Sequence[str]) -> None:
        """Drop the done-marks of ``tables`` (a fresh snapshot starts)."""
        ...


class TargetDatabaseState(TargetCheckpoints[Handle], TargetShadow[Handle], Protocol[Handle]):
    """Checkpoints and shadow together: what a target's apply commits with its data."""
