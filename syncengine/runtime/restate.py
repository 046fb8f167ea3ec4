"""Two-way ``prefer``: the direction out of the preferred side copies that side's rows as they
are *now*, for every key its stream mentions, its sibling's writes (echoes) included.

Why. Each direction's stream is minutes of history, not the present. The direction out of the
preferred side (``remote``: its source wins) used to apply the images its stream carried and
skip the echoes of its sibling's writes. Under writers on both sides, with the daemon killed
and retrying, it falls behind, and an image it applies late can be older than what its own
source holds by then: a row its sibling had meanwhile carried *into* the preferred side (the
other side's write) was overwritten on the other side with a stale preferred-side row, the
sibling took that echo as "both sides hold this" and, seeing the preferred side's row differ
from it, kept it as a preferred-side edit; a later delete on the other side was then refused
at the preferred side, and since the row kept there was the sibling's own write (an echo to
this direction), nothing ever carried it back: the two sides ended a row apart
(docs/benchmarks-findings.md, F39-twoway2, has the trace).

With the present rows instead, the last thing this direction does for a key after the last
write to it on the preferred side (a person's, or the sibling's, which arrives as an echo)
makes the other side equal to the preferred side's final row. Applied rows are full images
(``u`` upserts, ``d`` where the key has no row any more), so a replay after a crash re-reads
and writes the same present state: nothing goes back in time. An echo turned into such a
row writes only where the other side differs (detection skips what it already holds), so
nothing ping-pongs: the sibling receives that write as an echo and only refreshes its shadow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import pyarrow as pa

from syncengine.changes import (
    ECHO,
    META_COLUMNS,
    OP_DELETE,
    OP_INSERT,
    OP_UPDATE,
    ChangeBatch,
    is_data_column,
)

if TYPE_CHECKING:
    from syncengine.runtime.pipeline import Pipeline

#: the only ops a restated batch may hold (stream changes; not snapshot rows or truncates)
_STREAM_OPS = {OP_INSERT, OP_UPDATE, OP_DELETE}


@runtime_checkable
class CurrentRows(Protocol):
    """A source that can say what some keys hold now (PostgresSource.current_rows)."""

    async def current_rows(
        self, table: str, key: tuple[str, ...], schema: pa.Schema, keys: pa.Table
    ) -> pa.Table: ...


def applies(pipeline: Pipeline) -> bool:
    """Whether ``pipeline`` is the direction out of the preferred side of a two-way ``prefer``
    (its strategy, after config/twoway.py, is ``remote`` and it applies under an origin)."""
    two_way = bool(getattr(pipeline.target, "two_way", False))
    return (
        two_way
        and pipeline.config.conflicts.strategy == "remote"
        and isinstance(pipeline.source, CurrentRows)
    )


async def restate(pipeline: Pipeline, batches: Sequence[ChangeBatch]) -> list[ChangeBatch]:
    """``batches`` with every stream batch's changes replaced by its keys' present rows (see
    the module docstring), echoes included and no longer marked as such."""
    out = []
    for batch in batches:
        out.append(await _restated(pipeline, batch) if _restatable(batch) else batch)
    return out


def _restatable(batch: ChangeBatch) -> bool:
    if not batch.num_rows or not batch.key or "chunk" in batch.meta:
        return False
    return set(batch.ops.unique().to_pylist()) <= _STREAM_OPS


async def _restated(pipeline: Pipeline, batch: ChangeBatch) -> ChangeBatch:
    import polars as pl

    source = pipeline.source
    assert isinstance(source, CurrentRows)
    compacted = batch.compact()
    key = list(batch.key)
    schema = pa.schema([batch.data.schema.field(c) for c in batch.data_columns])
    keys = compacted.data.select(key)
    found = await source.current_rows(batch.table, batch.key, schema, keys)
    present = pl.from_arrow(found)
    assert isinstance(present, pl.DataFrame)
    changes = pl.from_arrow(compacted.data.select([*key, *META_COLUMNS[1:]]))
    assert isinstance(changes, pl.DataFrame)
    present = present.cast({k: changes.schema[k] for k in key})
    rows = changes.join(
        present.with_columns(pl.lit(True).alias("__present")),
        on=key, how="left", nulls_equal=True, maintain_order="left",
    )  # fmt: skip
    op = pl.when(pl.col("__present").fill_null(False)).then(pl.lit(OP_UPDATE))
    rows = rows.with_columns(op.otherwise(pl.lit(OP_DELETE)).alias("_op"))
    columns = [c for c in found.column_names if is_data_column(c)]
    data = rows.select(*columns, *META_COLUMNS).to_arrow()
    fields = [found.schema.field(c) for c in columns]  # keeps pg_type metadata
    meta_fields = [batch.data.schema.field(c) for c in META_COLUMNS]
    data = data.cast(pa.schema([*fields, *meta_fields]))
    meta = {k: v for k, v in batch.meta.items() if k != ECHO}
    return ChangeBatch(batch.table, data, batch.key, meta)
