"""Unsent values of a table being copied beside the stream, read back from the source.

A source may leave a column of an update unsent when it did not change: Postgres does not
resend an unchanged TOASTed value, Mongo's partial updates name only what they set. The target
then keeps what it holds for that column. A table copied while the stream runs (``resnapshot``,
a table added to a running pipeline: :mod:`.tableops`) may not hold the row yet: the update
then creates it from what was sent, the unsent column empty, and the chunk row that holds the
value arrives later with an older position, so the position fence drops it. The value was lost.

So, for tables under a live copy (``Pipeline.dense_fence``), each stream batch whose rows leave
columns unsent has those columns read back from the source by key (one read per batch) and
sent. A present value is never older than the change, and a later change of it is streamed
again, so the row only moves forward. A key the source no longer has keeps its columns unsent:
its delete follows in the stream.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from syncengine.changes import REPLAYED, UNSENT_PREFIX, ChangeBatch
from syncengine.runtime.restate import CurrentRows

if TYPE_CHECKING:
    from collections.abc import Sequence

    from syncengine.runtime.pipeline import Pipeline


async def completed(pipeline: Pipeline, batches: Sequence[ChangeBatch]) -> list[ChangeBatch]:
    """``batches`` with the unsent columns of live-copied tables' stream rows filled in from
    the source (a source that cannot read rows by key leaves them as they are)."""
    source = pipeline.source
    if not isinstance(source, CurrentRows):
        return list(batches)
    out = []
    for batch in batches:
        if (
            batch.table in pipeline.dense_fence
            and batch.key
            and batch.unsent_columns
            and not batch.meta.get(REPLAYED)
        ):
            batch = await _filled(source, batch)
        out.append(batch)
    return out


async def _filled(source: CurrentRows, batch: ChangeBatch) -> ChangeBatch:
    data, key, unsent = batch.data, list(batch.key), batch.unsent_columns
    masks = [pc.fill_null(data.column(UNSENT_PREFIX + c), False) for c in unsent]
    anywhere = functools.reduce(pc.or_, masks)
    wanted = data.filter(anywhere).select(key).group_by(key).aggregate([])
    if not wanted.num_rows:
        return batch
    schema = pa.schema([data.schema.field(c) for c in (*key, *unsent)])
    found = await source.current_rows(batch.table, batch.key, schema, wanted)
    # only keys and row numbers go through the join (Arrow joins no list or struct column);
    # each row's present values are then taken from ``found`` by its row number there
    index = pa.array(range(found.num_rows), pa.int64())
    present = found.select(key).append_column("__found", index)
    rows = data.select(key).append_column("__row", pa.array(range(data.num_rows), pa.int64()))
    joined = rows.join(present, keys=key, join_type="left outer").sort_by("__row")
    at = joined.column("__found").combine_chunks()
    there = pc.is_valid(at)
    for column, mask in zip(unsent, masks, strict=True):
        if column not in found.column_names:  # the table no longer has it: stays unsent
            continue
        fill = pc.and_(mask, there)
        field = data.schema.field(column)
        value = found.column(column).combine_chunks().take(at).cast(field.type)
        merged = pc.if_else(fill, value, data.column(column))
        data = data.set_column(data.schema.get_field_index(column), field, merged)
        flag = data.schema.get_field_index(UNSENT_PREFIX + column)
        still = pc.and_(mask, pc.invert(there))
        data = data.set_column(flag, data.schema.field(flag), still)
    return ChangeBatch(batch.table, data, batch.key, batch.meta)
