"""A table's snapshot applied on a target connection of its own, beside the stream's groups.

On the stream's one connection a snapshot slice is a transaction of its own between two
groups, and a group that arrives during it waits for the rest of it: a slice's cost is
mostly fixed (its transaction, staging, fence probe and fence rows), so slices short enough
for that wait to stay small made the copy several times slower. Where the target offers a
second connection (``Target.beside``: Postgres) and nothing in the table's resolution reads
the target (``remote`` without audit, one-way), the keyed snapshot batches of a table after
its first one are applied there, while the groups commit on the first; no group waits for a
slice on the client.

Order is kept on the server: both connections lock each written table of the lane
(``shared_tables``, targets/postgres/beside.py) before their transaction reads anything, so
two transactions writing one table run one after the other, exactly as on one connection, and
the per-key fence decides between a snapshot row and the stream's change of its key as before.
A table is registered while the applier is between groups and the lane idle (after its first
batch, which also creates the target table on the stream's connection), never while either
has a transaction open.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, cast

from syncengine.changes import ChangeBatch
from syncengine.runtime import restate

if TYPE_CHECKING:
    from syncengine.runtime.pipeline import Pipeline
    from syncengine.targets.base import Target


class BesideTarget(Protocol):
    """A target with a second connection (PostgresTarget.beside)."""

    shared_tables: set[str]

    def beside(self) -> Target: ...


def can_go_beside(pipeline: Pipeline, table: str) -> bool:
    """Whether ``table``'s snapshot batches may be applied on a second connection: the target
    has one and enforces the fence on the server, and resolving the table's rows reads
    nothing from the target (a read on the stream's connection could land inside a group's
    transaction) and needs no two-way or mesh step."""
    from syncengine.conflicts.fence import reads_nothing  # (Polars: not on a passthrough's path)

    target = pipeline.target
    if not hasattr(target, "beside") or not getattr(target, "server_fence", False):
        return False
    if getattr(target, "two_way", False) or getattr(target, "in_mesh", False):
        return False
    if restate.applies(pipeline) or restate.drops_superseded(pipeline):
        return False
    mappings = pipeline.mappings_for(table)
    return bool(mappings) and all(
        reads_nothing(m.conflicts or pipeline.config.conflicts, target) for _, m in mappings
    )


class Lane:
    """The second connection of one ``stream`` call and the tables registered for it."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._target: Target | None = None
        #: source tables whose snapshot batches go beside, and their target tables
        self.tables: set[str] = set()
        self._shared: set[str] = set()

    def register(self, table: str) -> None:
        """Let ``table``'s next snapshot batches go beside, if it can. Only while neither
        connection has a transaction open (see the module docstring)."""
        if table in self.tables or not can_go_beside(self.pipeline, table):
            return
        names = {m.target_name for _, m in self.pipeline.mappings_for(table)}
        cast(BesideTarget, self.pipeline.target).shared_tables.update(names)
        self._shared.update(names)
        self.tables.add(table)

    def takes(self, batch: ChangeBatch) -> bool:
        """An empty batch never goes beside: an empty chunk ensures its table through the
        stream's connection (``Pipeline._ensure_empty``)."""
        return bool(batch.key) and batch.num_rows > 0 and batch.table in self.tables

    def target(self) -> Target:
        if self._target is None:
            self._target = cast(BesideTarget, self.pipeline.target).beside()
        return self._target

    async def close(self) -> None:
        """After the lane's last transaction ended: the second connection goes, and the
        stream's writes of the tables stop taking their lock."""
        if self._target is not None:
            await self._target.close()
            self._target = None
        if self._shared:
            cast(BesideTarget, self.pipeline.target).shared_tables.difference_update(self._shared)
            self._shared.clear()
        self.tables.clear()
