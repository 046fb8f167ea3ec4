"""The contract every source (Postgres, Mongo, plugins) fulfils for the runtime.

Positions are strings that sort in source order (``changes.lsn_to_pos`` for Postgres LSNs, the
resume token's hex ``_data`` for Mongo). A batch's ``meta["resume"]`` is the position to
checkpoint once the batch (and every batch before it) is committed at the target: a commit
boundary, and every row emitted before it belongs to a transaction committed at or before it.
Rows of a transaction still open carry no resume; the runtime holds them for the next group
(a huge transaction is committed in parts without moving the checkpoint, so a crash replays
it whole, and the per-key position fence keeps the replay from going back in time).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

from syncengine.changes import ChangeBatch

#: The mapping filters a source may push into its reads: for a table, the (SQL predicate,
#: sqlglot dialect) of every mapping that reads it; a row none of them keeps need not be read.
#: Empty when some mapping reads the table unfiltered. A source that has a ``row_filters``
#: attribute gets it from the runtime; pushing is optional, the mapping filters anyway.
RowFilters = Callable[[str], tuple[tuple[str, str], ...]]


def no_row_filters(table: str) -> tuple[tuple[str, str], ...]:
    """Push nothing (a source used without a pipeline: tests, ``verify``)."""
    return ()


def resume_position(batch: ChangeBatch) -> str | None:
    """Where to resume after ``batch`` is committed (None: not a boundary, don't checkpoint)."""
    value = batch.meta.get("resume")
    return str(value) if value is not None else None


@dataclass(frozen=True)
class TableInfo:
    """What a source knows about one table/collection before reading it."""

    name: str
    key: tuple[str, ...]
    schema: pa.Schema | None = None
    estimated_rows: int | None = None


@dataclass(frozen=True)
class SourceLag:
    """For ``status`` and metrics."""

    position: str | None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    retained_wal_bytes: int | None = None
    details: dict[str, object] = field(default_factory=dict)


class ChangeSource(Protocol):
    """A change source. One instance serves one pipeline."""

    #: checkpoint stream name, e.g. ``slot:syncengine_orders`` or ``mongo:shop``
    stream_name: str

    async def open(self) -> None:
        """Connect, check permissions/settings, create slot/publication where missing."""

    async def close(self) -> None: ...

    async def tables(self) -> list[TableInfo]: ...

    def snapshot(
        self,
        tables: Sequence[str] | None = None,
        where: str | None = None,
        parallel: int = 2,
    ) -> AsyncIterator[ChangeBatch]:
        """Current state as ``r`` rows, consistent with :meth:`snapshot_position`.

        Resumable: chunk progress is kept in the state store given to the source.
        """
        ...

    async def snapshot_position(self) -> str | None:
        """The stream position the last snapshot is consistent with."""
        ...

    def stream(self, start: str | None, until: str | None = None) -> AsyncIterator[ChangeBatch]:
        """Changes after ``start``; stops after ``until`` when given (``sync --once``)."""
        ...

    async def acknowledge(self, position: str) -> None:
        """The target committed everything up to ``position``; the source may discard it."""

    def want(self) -> None:
        """The applier is idle: a stream that holds committed changes to make bigger groups
        (``batch.max_wait``) may hand them over now. A hint; doing nothing is correct."""

    async def current_position(self) -> str:
        """The source's position now (``sync --once`` drains up to it)."""
        ...

    async def lag(self, acknowledged: str | None) -> SourceLag: ...

    def scan(self, table: str, columns: Sequence[str] | None = None) -> AsyncIterator[ChangeBatch]:
        """The table's current rows as ``r`` batches, with no side effects (no slot, no chunk
        progress): what ``verify`` compares the target with. Same Arrow types as ``stream``;
        at least one batch, empty when the table is. ``columns``: only these and the key are
        needed (a table sweep reads keys alone); a source that cannot narrow its read returns
        more."""
        ...
