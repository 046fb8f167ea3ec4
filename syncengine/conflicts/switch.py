"""A strategy switch on a server-fence target (Postgres): the shadow rebuilt before streaming.

Under ``remote`` without ``audit`` a Postgres target keeps no shadow row for a key the stream
writes in order (the checkpoint is its fence: targets/postgres/floor.py), and the rows
an earlier strategy left are not kept current. Another strategy (``local``, ``merge``,
``manual``, ``timestamp``, ``remote`` with ``audit``) compares the target with the shadow, so
on its first batch of the table after such a period it would see every key the stream wrote as
"a row this pipeline never wrote" (a false conflict), or compare with an outdated hash and base.

So the target records, per table, how the shadow was kept (:data:`KEPT_FENCE` or
:data:`KEPT_FULL`), and the first batch of a table under a detecting strategy whose shadow was
kept as a fence rebuilds it from the target's rows, in one transaction with the new record:
hash and base of every row as the target holds it now, at the stored checkpoint's position
(a higher position a fence row already holds is kept). Edits made to the target before the
switch are thereby the starting point (``remote`` was overwriting them); every edit after it is
a conflict like under the strategy from the start. The cost: one scan of the target table and
one shadow row written per target row, once per switch (docs/conflicts.md).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import polars as pl
import pyarrow as pa

from syncengine.config.models import ConflictsConfig
from syncengine.conflicts.fence import reads_nothing
from syncengine.conflicts.rows import (
    EXISTS,
    canonical,
    carried_columns,
    encode_rows,
    row_hashes,
    row_keys,
)
from syncengine.targets.base import TableSpec, Target

log = logging.getLogger("syncengine.conflicts")

#: the shadow holds at most fence rows: ``remote`` without ``audit``
KEPT_FENCE = "fence"
#: the shadow holds hash, base and position of every key written: the detecting strategies
KEPT_FULL = "full"


def kept_for(config: ConflictsConfig, target: Target) -> str:
    return KEPT_FENCE if reads_nothing(config, target) else KEPT_FULL


async def prepare(
    target: Target, spec: TableSpec, config: ConflictsConfig, stream: str | None
) -> None:
    """Make the table's shadow fit ``config`` before its first batch (see the module)."""
    if not getattr(target, "server_fence", False):
        return  # other targets keep a slim row per key under remote (syncengine.conflicts.fence)
    keeper: Any = target
    wanted = kept_for(config, target)
    kept = await keeper.shadow_kept(spec.name)
    if kept == wanted:
        return
    rows = None
    if wanted == KEPT_FULL and kept == KEPT_FENCE:
        log.warning(
            "%s: the shadow of %s was kept for remote; rebuilding it from the target's rows "
            "for strategy %s (once)", keeper.pipeline, spec.name, config.strategy,
        )  # fmt: skip
        rows = shadow_rows(target, spec)
    await keeper.keep_shadow(spec.name, wanted, rows, stream)


async def shadow_rows(target: Target, spec: TableSpec) -> AsyncIterator[pa.Table]:
    """(row_key, row_hash, base) of every target row, hashed as detection hashes a read-back
    (vectorized, one scan chunk at a time)."""
    columns = list(spec.schema.names)
    carried = carried_columns(spec.schema)
    async for chunk in target.scan(spec):
        local = canonical(chunk, spec).with_columns(pl.lit(True).alias(EXISTS))
        yield pa.table(
            {
                "row_key": row_keys(local, spec.key).to_arrow(),
                "row_hash": row_hashes(local, columns, carried).to_arrow(),
                "base": encode_rows(local, columns).to_arrow(),
            }
        )
