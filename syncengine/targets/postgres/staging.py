"""The temporary tables one staged write uses: its staging table and the fence's companion.

The staging table is created for each write (``ON COMMIT DROP``). Reusing one per table shape
(``ON COMMIT DELETE ROWS``) saves the catalog rows of a ``CREATE``, but measured slower: a
``COPY`` into a table created in the same transaction skips the free-space map, one into an
emptied old table consults it for every page (docs/benchmarks-findings.md, "Postgres target
apply").

The companion (``…_had``: staged row number, the position its key's shadow row holds) receives
the few staged rows whose key the shadow already knows (:mod:`.fence`); it is small, so it is
created once per connection and emptied at each commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import count

import psycopg
from psycopg import sql


@dataclass(frozen=True)
class Stage:
    """A write's staging table and its fence companion, both empty when taken."""

    table: sql.Identifier
    had: sql.Identifier


@dataclass
class StagingTables:
    """Names of one connection's staging tables (drop the object with the connection)."""

    _ids: count[int] = field(default_factory=count)
    #: companions handed out in the current transaction
    _taken: int = 0

    def begin(self) -> None:
        """A new transaction: every companion is empty again."""
        self._taken = 0

    async def take(
        self, conn: psycopg.AsyncConnection, columns: Sequence[tuple[str, str]]
    ) -> Stage:
        """A new staging table with ``columns`` (name, formatted type) and an empty companion
        (a second write in one transaction gets a second companion, never the first's rows)."""
        stage = Stage(
            sql.Identifier(f"_syncengine_stage_{next(self._ids)}"),
            sql.Identifier(f"_syncengine_had_{self._taken}"),
        )
        self._taken += 1
        typed = sql.SQL(", ").join(
            sql.SQL("{} {}").format(
                sql.Identifier(name), sql.SQL(kind)
            )  # catalog format_type output or constants
            for name, kind in columns
        )
        await conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE {} ({}) ON COMMIT DROP; CREATE TEMP TABLE IF NOT EXISTS {} "
                "(__row bigint, __had text) ON COMMIT DELETE ROWS"
            ).format(stage.table, typed, stage.had)
        )
        return stage
