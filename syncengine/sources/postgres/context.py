"""What the snapshot, incremental, delete and watermark helpers may use of the Postgres source.

:class:`.source.PostgresSource` hands itself to :mod:`.snapshot`, :mod:`.incremental`,
:mod:`.deletes` and :mod:`.watermarks` typed as a :class:`SourceContext`, so those helpers see a
small public surface instead of the whole class, and none of them imports :mod:`.source` (which
imports them): the package's import graph has no cycle (``tests/unit/test_import_graph.py``).
The context is the live source, not a copy: the filters the runtime sets after construction and
the keys a snapshot adds are seen by everyone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import psycopg

    from syncengine.config.models import BatchConfig, PostgresSourceConfig
    from syncengine.sources.base import RowFilters
    from syncengine.state.protocols import SourceState


class SourceContext(Protocol):
    """One pipeline's Postgres source, as its helpers see it."""

    pipeline: str
    config: PostgresSourceConfig
    state: SourceState
    batch: BatchConfig
    #: the replication slot and the publication it decodes through
    slot: str
    publication: str
    #: the configured tables, canonical names
    tables_: list[str]
    #: each table's key (``admin.table_keys``), filled by ``open`` and extended by every
    #: snapshot; the stream's and the delete reader's assemblers read it
    keys: dict[str, tuple[str, ...]]
    #: the mappings' filters, pushed into snapshot reads
    row_filters: RowFilters

    async def connect(self, replication: bool = False) -> psycopg.AsyncConnection:
        """A new connection (the caller closes it)."""
        ...

    async def catalog(self) -> psycopg.AsyncConnection:
        """The source's one shared ordinary connection, for catalog queries and short
        statements (opened on first use; the source closes it)."""
        ...

    async def current_position(self) -> str:
        """Where the source is now (a position string)."""
        ...
