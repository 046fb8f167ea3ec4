"""Keyless tables: a batch of changes as a multiset delta, and the table-level position fence.

A table without a primary key (Postgres REPLICA IDENTITY FULL, or insert-only) has no column
set that names one row, and identical rows are legitimate. Its batch has ``key == ()``. The
table is a *multiset* of rows, and every change is a multiset operation: an insert adds its
new image, a delete removes one row equal to its old image, an update does both. Those
operations commute (the source only removes a row that exists at that moment), so a whole
group reduces to one net count per distinct row image, computed here set-wise:

* positive: append that many copies (the new images of the last inserting changes, whose
  positions name them: a Mongo target derives each document's ``_id`` from it);
* negative: remove that many rows equal to the image, null-safely, one target row per copy.

Rows inserted and deleted inside the group cancel out, so a delete never removes a target row
that an insert of the same group was meant to add. A truncate drops everything before it.

Per-key compaction, shadow rows and conflict strategies do not apply (the whole row is the
identity; a changed row is another row). Replays are fenced per table instead: the shadow
keeps one row per keyless table (:data:`FENCE_KEY`) holding the position of the last stream
change applied, committed with the data, and a replayed change at or below it is dropped
(docs/postgres-source.md, *Keyless tables*).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from syncengine.changes import (
    BEFORE_PREFIX,
    OP_DELETE,
    OP_INSERT,
    OP_READ,
    OP_TRUNCATE,
    OP_UPDATE,
    UNSENT_PREFIX,
    ChangeBatch,
)
from syncengine.targets.base import ShadowUpdate

if TYPE_CHECKING:
    import polars as pl
else:
    from syncengine.deferred import polars as pl

#: the shadow row key of a keyless table's position fence (no real row key is empty)
FENCE_KEY = "[]"
#: what the fence row's ``row_hash`` holds (a non-null hash: not a tombstone)
FENCE_HASH = "keyless-fence"
#: the count column of :attr:`KeylessDelta.removes`
COUNT = "__n"
#: the batch row a delta row comes from (to report a refused row as it was sent)
ROW = "__row"


@dataclass(frozen=True)
class KeylessDelta:
    """The net effect of a keyless batch."""

    truncate: bool
    #: data columns + ``_pos`` (the change that added the row) + :data:`ROW`, one row per copy
    #: to append
    appends: pl.DataFrame
    #: data columns + :data:`COUNT` + :data:`ROW`: each distinct old image and how many rows
    #: equal to it go
    removes: pl.DataFrame
    #: changes that cannot be applied (an update or delete without an old row image): the
    #: original rows, with the reason
    unmatched: pl.DataFrame
    reason: str = ""


def delta(batch: ChangeBatch, columns: list[str] | None = None) -> KeylessDelta:
    """The multiset delta of ``batch`` over ``columns`` (default: every data column)."""
    names = list(columns if columns is not None else batch.data_columns)
    appended = _appended_as_sent(batch, names)
    if appended is not None:
        return appended
    frame = batch.to_polars().with_row_index("__seq")
    truncates = frame.filter(pl.col("_op") == OP_TRUNCATE)
    truncate = bool(truncates.height)
    if truncate:
        frame = frame.filter(pl.col("__seq") > truncates["__seq"][-1])
    olds = frame.filter(pl.col("_op").is_in([OP_UPDATE, OP_DELETE]))
    lacking = [c for c in names if BEFORE_PREFIX + c not in frame.columns]
    unmatched = frame.clear()
    reason = ""
    if lacking:
        # without an old image the row cannot be found (REPLICA IDENTITY is not FULL)
        unmatched = olds
        reason = (
            f"{batch.table}: an update or delete of a keyless table carries no old row image "
            f"(columns {', '.join(lacking)}); set REPLICA IDENTITY FULL on the source table"
        )
        frame = frame.filter(pl.col("_op").is_in([OP_INSERT, OP_READ]))
        olds = frame.clear().with_columns([pl.col(c).alias(BEFORE_PREFIX + c) for c in names])

    def value(column: str) -> pl.Expr:
        # an unchanged TOASTed value is not sent: the old image holds it
        flag = UNSENT_PREFIX + column
        old = BEFORE_PREFIX + column
        if flag in frame.columns and old in frame.columns:
            return (
                pl.when(pl.col(flag).fill_null(False))
                .then(pl.col(old))
                .otherwise(pl.col(column))
                .alias(column)
            )
        return pl.col(column)

    if not olds.height:  # inserts (and snapshot reads) only: each row appended, none removed
        appends = frame.select(*[value(c) for c in names], "_pos", pl.col("__seq").alias(ROW))
        removes = frame.clear().select(
            *names, pl.lit(0, pl.Int64).alias(COUNT), pl.col("__seq").alias(ROW)
        )
        return KeylessDelta(truncate, appends, removes, unmatched.drop("__seq"), reason)
    adds = frame.filter(pl.col("_op").is_in([OP_INSERT, OP_READ, OP_UPDATE])).select(
        "__seq", "_pos", *[value(c) for c in names], pl.lit(1, pl.Int64).alias("__sign")
    )
    subs = olds.select(
        "__seq",
        "_pos",
        *[pl.col(BEFORE_PREFIX + c).alias(c) for c in names],
        pl.lit(-1, pl.Int64).alias("__sign"),
    )
    both = pl.concat([adds, subs], how="vertical_relaxed")
    image = pl.struct(names) if names else pl.lit(0)
    both = both.with_columns(pl.col("__sign").sum().over(image).alias("__net"))
    # the last ``net`` inserting changes of each image are the rows to append
    appends = (
        both.filter((pl.col("__sign") > 0) & (pl.col("__net") > 0))
        .with_columns(pl.col("__seq").rank("ordinal", descending=True).over(image).alias("__rank"))
        .filter(pl.col("__rank") <= pl.col("__net"))
        .sort("__seq")
        .select(*names, "_pos", pl.col("__seq").alias(ROW))
    )
    removes = (
        both.filter((pl.col("__sign") < 0) & (pl.col("__net") < 0))
        .with_columns(image.alias("__image"))
        .unique(subset="__image", keep="first", maintain_order=True)
        .select(*names, (-pl.col("__net")).alias(COUNT), pl.col("__seq").alias(ROW))
    )
    return KeylessDelta(truncate, appends, removes, unmatched.drop("__seq"), reason)


def _appended_as_sent(batch: ChangeBatch, names: list[str]) -> KeylessDelta | None:
    """The delta of a batch of inserts (and snapshot reads) with every column sent: each row
    appended as it is. Decided in Arrow and built with one conversion: a live group's keyless
    table (a history or audit log) is usually this, and the general path's dozen Polars steps
    cost about a millisecond a group. None for any other batch."""
    if not batch.num_rows or batch.unsent_columns:
        return None
    if not pc.all(pc.is_in(batch.ops, pa.array([OP_INSERT, OP_READ]))).as_py():
        return None
    frame = pl.from_arrow(batch.data.select([*names, "_pos"]), rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    appends = frame.with_row_index(ROW).select(*names, "_pos", ROW)
    removes = appends.clear().select(*names, pl.lit(0, pl.Int64).alias(COUNT), ROW)
    unmatched = pl.from_arrow(batch.data.slice(0, 0))
    assert isinstance(unmatched, pl.DataFrame)
    return KeylessDelta(False, appends, removes, unmatched)


def unfenced(batch: ChangeBatch, fence: str | None) -> ChangeBatch:
    """The batch without the stream changes a replay repeats (position at or below the
    table's fence). Snapshot batches are never fenced: their rows share one position and a
    keyless snapshot starts by emptying the table."""
    if fence is None or batch.meta.get("snapshot") or not batch.num_rows:
        return batch
    data = batch.data  # Arrow, not Polars: this runs at the commit, on the group's critical path
    return batch.replace(data.filter(pc.greater(data.column("_pos"), fence)))


def fence_shadow(parts: list[ChangeBatch]) -> ShadowUpdate:
    """The shadow row that moves the table's fence to the last stream change of ``parts``, or
    to where a snapshot that replaces the table was read (``meta["fence"]``)."""
    positions = [
        pc.max(p.data.column("_pos").filter(pc.not_equal(p.ops, OP_READ))).as_py()
        for p in parts
        if p.num_rows and not p.meta.get("snapshot")
    ]
    positions += [str(p.meta["fence"]) for p in parts if p.meta.get("fence")]
    position = max((p for p in positions if p is not None), default=None)
    if position is None:
        return ShadowUpdate()
    upserts = pa.table(
        {
            "row_key": pa.array([FENCE_KEY], pa.string()),
            "row_hash": pa.array([FENCE_HASH], pa.string()),
            "base": pa.array([None], pa.string()),
            "position": pa.array([position], pa.string()),
        }
    )
    return ShadowUpdate(upserts)
