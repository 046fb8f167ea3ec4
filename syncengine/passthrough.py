"""The raw chunk passthrough, as capabilities a source kind and a target kind declare.

A snapshot chunk whose rows nothing in between would change can go from source to target as
the source's own bytes, never decoded (Postgres → Postgres: binary ``COPY``, see
:mod:`syncengine.runtime.passthrough`). Whether a pair can do that is a matter of the two
kinds, not of the runtime: a source that can export raw chunks says in which format
(:class:`RawChunkExport`), a target that can import them says which formats it takes
(:class:`RawChunkImport`), and the runtime connects them when the names match. A third-party
kind offers the same by implementing these protocols; the runtime names no kind.

The chunk's description (``shape``) and the bytes are the format's business: the sink and the
source agree on them through the format name.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from syncengine.sources.base import TableInfo
    from syncengine.state.base import Chunk

#: ``await write(piece)`` for every piece of a chunk's raw data, in order
Write = Callable[[bytes], Awaitable[None]]
#: ``await feed(write)`` streams a chunk's raw data to ``write``
Feed = Callable[[Write], Awaitable[None]]

#: how the format describes a chunk's table (Postgres binary COPY: its ``TableShape``)
Shape = TypeVar("Shape", contravariant=True)


class ChunkSink(Protocol[Shape]):
    """Where a snapshot's raw chunks go, each committed with its done-mark at the target."""

    def takes(self, shape: Shape) -> bool:
        """Whether this table's chunks can pass through (the target's columns fit them)."""
        ...

    async def copy_chunk(
        self, shape: Shape, chunk: Chunk, encoding: bytes, feed: Feed
    ) -> int | None:
        """Write the chunk's rows (raw data, text in ``encoding``, the source session's) and
        its done-mark in one target transaction: the rows written, or None when the target
        refused a row (nothing written; the chunk is then read the ordinary way)."""
        ...

    async def done_chunks(self, tables: Sequence[str]) -> list[Chunk]:
        """The chunks of ``tables`` whose done-mark the target committed."""
        ...

    async def forget(self, tables: Sequence[str]) -> None:
        """Drop the done-marks of ``tables`` (a fresh snapshot starts)."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class RawChunkExport(Protocol):
    """A source whose snapshot can hand chunks to a :class:`ChunkSink` as raw data."""

    def raw_chunk_format(self) -> str | None:
        """The format of the raw chunks its snapshot can export as configured (None: none,
        e.g. a mode that reads no snapshot chunks)."""
        ...

    def snapshot_tables(self, tables: Sequence[str] | None) -> list[str]:
        """The tables a snapshot of ``tables`` (None: every configured one) reads, by the
        names its :meth:`tables` and its chunks use."""
        ...

    async def tables(self) -> list[TableInfo]: ...

    def use_chunk_sink(self, sink: ChunkSink[Any]) -> None:
        """Where the next snapshot sends the chunks ``sink`` takes (that snapshot closes it)."""
        ...


@runtime_checkable
class RawChunkImport(Protocol):
    """A target that can commit raw chunks of some source formats with their done-marks."""

    def accepts_raw_chunks(self, fmt: str) -> bool: ...

    async def chunk_sink(self, tables: dict[str, str]) -> ChunkSink[Any]:
        """A sink for the chunks of ``tables`` (source table → target table, created)."""
        ...


@runtime_checkable
class KeyAfterLoad(Protocol):
    """A target that can create a first backfill's tables without their key index and build
    it once their chunks are in (one sorted build, as pg_dump does, instead of an index kept
    up row by row by concurrent writers). Until it is built the target itself keeps anything
    that matches rows by key away from such a table."""

    def keys_after_load(self, on: bool) -> None:
        """While on, keyed tables the target creates get their key at :meth:`build_keys`."""
        ...

    async def build_keys(self) -> None:
        """Build the keys of the tables created that way (every chunk of them is in)."""
        ...
