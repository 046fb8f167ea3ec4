"""Last writer wins across the two directions of a two-way pipeline (``timestamp``, and
``merge`` for what it does not merge field by field).

Every state of a key on either side has a *version*: the commit time of the write that made
it and the side that wrote it (``remote``: this direction's source, ``local``: its target).
Both directions compare the same pair, so they agree on one winner per key:

* an incoming change (source write) carries its own commit time (``_ts``, kept through
  compaction), side ``remote``; an echo (the other direction's write to this direction's
  source, carrying a row that came from the target) carries side ``local``;
* the target's state: a row written by a person has its commit time and side ``local``
  (``pg_xact_commit_timestamp_origin``); a row or a delete this direction applied has the
  version recorded with it (:mod:`syncengine.targets.postgres.versions`); a row deleted by a
  person has no known version (*unknown*).

The change is applied when its version is newer (``TimestampStrategy``: later time, or at
equal times the ``tie`` side). An unknown target version (a delete this direction has not
been told the time of) loses to a change, which is therefore applied *provisionally*: the
delete itself reaches the other side through the other direction, which applies it there when
it is newer; this direction then sees that write as an echo, newer than the provisional row
it wrote, and writes it back too (a *correction*). An echo is applied only when it is known
to be newer (an unknown target version is a later delete, on its way across). Every write to
a side reaches the other as a change or an echo, so once writers stop both sides hold the
newest version of every key.

Two-way ``merge`` is judged the same way; only a real concurrent edit (both sides hold the
row, the target changed since the base) is written as the field-level merge, a field changed
on both sides taking the newer side's value. That row is a write after both it merges: it is
recorded a microsecond after the newer of the two, so its echo beats the newer write's own
row on the other side (at that write's own time it was taken for that very write, and the
other side kept the row without the merged fields); both directions, which merge the same
pair of writes, record the same version. Echoes are always judged whole-row, as under ``timestamp``:
should the two directions have merged from different bases, the newer version (or the
``tie`` side) settles the key on both sides instead of merging again, so nothing ping-pongs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import polars as pl
import pyarrow as pa

from syncengine.strategies.base import LOCAL, REMOTE, SIDE
from syncengine.targets.base import TableSpec

if TYPE_CHECKING:
    from syncengine.config.models import ConflictsConfig

UTC_US = pl.Datetime("us", "UTC")
#: strategies that, in a two-way direction, judge changes by versions: ``timestamp`` picks
#: the newer row, ``merge`` merges fields and settles a field both sides changed the same way
VERSIONED = ("timestamp", "merge")


def by_versions(conflicts: ConflictsConfig) -> bool:
    """Whether ``conflicts`` (in a two-way direction) compares versions (commit times), not a
    configured ``timestamp`` field."""
    return conflicts.strategy in VERSIONED and not conflicts.timestamp


@runtime_checkable
class VersionedTarget(Protocol):
    """A target that can say the versions of its rows (PostgresTarget of a two-way direction)."""

    async def read_commit_times(self, spec: TableSpec, keys: pa.Table) -> pa.Table:
        """Key columns, ``_ts`` (last commit time) and ``_mine`` (written by this direction)."""
        ...

    async def read_versions(self, table: str, row_keys: list[str]) -> pa.Table:
        """``row_key``, ``ts``, ``side``, ``deleted`` as this direction recorded them."""
        ...


def target_versions(
    row_key: pl.Series,
    exists: pl.Series,
    commits: pl.DataFrame,
    recorded: pl.DataFrame,
    incoming: tuple[pl.Series, str, pl.DataFrame] | None = None,
) -> pl.DataFrame:
    """``_ts`` and ``_side`` of the target's state per row (aligned with ``row_key``).

    ``commits``: ``row_key``, ``_ts``, ``_mine`` of the rows found (their last commit, and
    whether this direction made it); ``recorded``: ``row_key``, ``ts``, ``side``, ``deleted``
    as recorded by this direction (in a mesh: by any direction into the node). ``incoming``:
    the changes' own times and side, and what this direction itself recorded last; a change
    that *is* that write, for a row since deleted (a replay after a failed group), gets its
    version, so it is taken for the one write it is instead of being applied again over an
    unknown delete (which came after it)."""
    frame = (
        row_key.to_frame("row_key")
        .with_columns(exists.alias("__exists"))
        .join(commits, on="row_key", how="left", maintain_order="left")
        .join(recorded, on="row_key", how="left", maintain_order="left")
    )
    present, mine = pl.col("__exists"), pl.col("_mine").fill_null(False)
    kept = pl.col("deleted").is_not_null() & ~pl.col("deleted")
    gone = pl.col("deleted").fill_null(False)
    if incoming is not None:
        times, whose, own = incoming
        mine_last = own.select(
            "row_key", pl.col("ts").alias("__own_ts"), pl.col("side").alias("__own_side"),
            pl.col("deleted").alias("__own_deleted"),
        )  # fmt: skip
        frame = frame.with_columns(times.cast(UTC_US).alias("__incoming")).join(
            mine_last, on="row_key", how="left", maintain_order="left"
        )
        same = (
            (pl.col("__own_ts").cast(UTC_US) == pl.col("__incoming"))
            & (pl.col("__own_side") == whose)
            & ~pl.col("__own_deleted")
        )
        replay = (~present & same).fill_null(False)
        frame = frame.with_columns(
            pl.when(replay).then(pl.col("__own_ts")).otherwise(pl.col("ts")).alias("ts"),
            pl.when(replay).then(pl.col("__own_side")).otherwise(pl.col("side")).alias("side"),
            (pl.col("deleted") | replay).alias("deleted"),
        )
        gone = gone | replay
    ts = (
        pl.when(present & mine & kept)
        .then(pl.col("ts"))
        .when(present)
        .then(pl.col("_ts"))
        .when(gone)
        .then(pl.col("ts"))
    )
    side = (
        pl.when(present & mine & kept)
        .then(pl.col("side"))
        .when(present & mine)
        .then(pl.lit(REMOTE))
        .when(present)
        .then(pl.lit(LOCAL))
        .when(gone)
        .then(pl.col("side"))
    )
    return frame.select(ts.cast(UTC_US).alias("_ts"), side.cast(pl.String).alias(SIDE))


def recorded_rows(
    row_key: pl.Series,
    ts: pl.Series,
    side: str,
    exists: pl.Series,
    written: pl.Series,
    hashes: pl.Series | None = None,
) -> pa.Table:
    """The versions to record for the ``written`` rows: their own commit time, ``side``,
    whether the write is a delete, and the written row's hash (a Mongo target tells its own
    writes by it: syncengine.targets.mongo.versions)."""
    frame = pl.DataFrame(
        {
            "row_key": row_key,
            "ts": ts.cast(UTC_US),
            "side": pl.repeat(side, row_key.len(), dtype=pl.String, eager=True),
            "deleted": ~exists,
            "hash": hashes
            if hashes is not None
            else pl.repeat(None, row_key.len(), dtype=pl.String, eager=True),
        }
    ).filter(written)
    return frame.to_arrow()
