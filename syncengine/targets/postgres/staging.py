"""The temporary tables one staged write uses: its staging table and the fence's companion.

A big write gets a staging table created for it (``ON COMMIT DROP``): a ``COPY`` into a table
created in the same transaction skips the free-space map, one into an emptied old table
consults it for every page, and reuse measured slower for 12,000-row groups
(docs/benchmarks-findings.md, "Postgres target apply"). A small write (at most
:data:`REUSED_UP_TO` rows: a live stream's groups, a snapshot slice between two of them)
reuses one per table shape (``ON COMMIT DELETE ROWS``), created once per connection: there
the ``CREATE`` and the ``DROP`` at commit were most of the cost (a 20-row write 8.1 ms fresh
vs 1.5 ms reused, 500 rows 15.9 vs 8.4 ms, 5,000 rows 117 vs 109 ms: same findings file,
"Staging tables reused for small writes").

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


#: writes of at most this many rows reuse their shape's staging table
REUSED_UP_TO = 5_000


@dataclass
class StagingTables:
    """Names of one connection's staging tables (drop the object with the connection)."""

    _ids: count[int] = field(default_factory=count)
    #: companions handed out in the current transaction
    _taken: int = 0
    #: a number per table shape, for the names of its reused staging tables
    _shapes: dict[tuple[tuple[str, str], ...], int] = field(default_factory=dict)
    #: reused tables handed out in the current transaction, per shape
    _reused: dict[int, int] = field(default_factory=dict)
    #: reused tables (and companions) that exist: created by a transaction that committed
    _existing: set[str] = field(default_factory=set)
    #: the ones the current transaction creates (they exist once it commits)
    _creating: set[str] = field(default_factory=set)

    def begin(self) -> None:
        """A new transaction: every companion and reused staging table is empty again (and
        what the last one created is gone unless :meth:`committed` said otherwise)."""
        self._taken = 0
        self._reused.clear()
        self._creating.clear()

    def committed(self) -> None:
        """The transaction committed: the tables it created stay for the session, so the
        next transactions need not send their ``CREATE … IF NOT EXISTS`` (a round trip per
        table and group)."""
        self._existing |= self._creating
        self._creating.clear()

    async def take(
        self, conn: psycopg.AsyncConnection, columns: Sequence[tuple[str, str]], rows: int
    ) -> Stage:
        """An empty staging table with ``columns`` (name, formatted type) for ``rows`` rows,
        and an empty companion. Two writes in one transaction never share either: a second
        write of one shape gets a second reused table, as it gets a second companion."""
        names = [f"_syncengine_had_{self._taken}"]
        had = sql.Identifier(names[0])
        self._taken += 1
        typed = sql.SQL(", ").join(
            sql.SQL("{} {}").format(
                sql.Identifier(name), sql.SQL(kind)
            )  # catalog format_type output or constants
            for name, kind in columns
        )
        if rows <= REUSED_UP_TO:
            # IF NOT EXISTS: the transaction that created it may have rolled back since
            shape = self._shapes.setdefault(tuple(columns), len(self._shapes))
            nth = self._reused.get(shape, 0)
            self._reused[shape] = nth + 1
            names.append(f"_syncengine_stage_s{shape}_{nth}")
            table = sql.Identifier(names[-1])
            create = "CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS"
            if self._existing.issuperset(names):
                return Stage(table, had)
        else:
            table = sql.Identifier(f"_syncengine_stage_{next(self._ids)}")
            create = "CREATE TEMP TABLE {} ({}) ON COMMIT DROP"
        await conn.execute(
            sql.SQL(
                create + "; CREATE TEMP TABLE IF NOT EXISTS {} "
                "(__row bigint, __had text) ON COMMIT DELETE ROWS"
            ).format(table, typed, had)
        )
        self._creating.update(names)
        return Stage(table, had)
