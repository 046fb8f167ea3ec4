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
(docs/benchmarks-findings.md has the trace, in the two-way kill section).

With the present rows instead, the last thing this direction does for a key after the last
write to it on the preferred side (a person's, or the sibling's, which arrives as an echo)
makes the other side equal to the preferred side's final row. Applied rows are full images
(``u`` upserts, ``d`` where the key has no row any more), so a replay after a crash re-reads
and writes the same present state: nothing goes back in time. An echo turned into such a
row writes only where the other side differs (detection skips what it already holds), so
nothing ping-pongs: the sibling receives that write as an echo and only refreshes its shadow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    import polars as pl

    from syncengine.runtime.pipeline import Pipeline
else:
    from syncengine.deferred import polars as pl

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
    """One batch as its keys' present rows, no longer an echo."""
    rows, columns = await _present(pipeline, batch)
    return _batch(batch, rows, columns, {k: v for k, v in batch.meta.items() if k != ECHO})


async def _present(pipeline: Pipeline, batch: ChangeBatch) -> tuple[pl.DataFrame, list[str]]:
    """The batch's keys (compacted: each key's last ``_pos``/``_ts``/``_txid``) with their
    present row, ``_op`` ``u`` where there is one and ``d`` where not; and the data columns."""
    source = pipeline.source
    assert isinstance(source, CurrentRows)
    compacted = batch.compact()
    key = list(batch.key)
    schema = pa.schema([batch.data.schema.field(c) for c in batch.data_columns])
    found = await source.current_rows(batch.table, batch.key, schema, compacted.data.select(key))
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
    return rows, [c for c in found.column_names if is_data_column(c)]


def _batch(
    batch: ChangeBatch, rows: pl.DataFrame, columns: list[str], meta: Mapping[str, object]
) -> ChangeBatch:
    """``rows`` as a batch of ``batch``'s table, typed as its columns were."""
    data = rows.select(*columns, *META_COLUMNS).to_arrow()
    fields = [batch.data.schema.field(c) for c in (*columns, *META_COLUMNS)]  # keeps pg_type
    return ChangeBatch(batch.table, data.cast(pa.schema(fields)), batch.key, meta)


# -- two-way timestamp: echoes carry the version their sibling recorded -------------------


@runtime_checkable
class SiblingVersions(Protocol):
    """A source that can say who last wrote some keys and what a sibling direction recorded
    for them (PostgresSource.sibling_versions)."""

    async def sibling_versions(
        self,
        table: str,
        key: tuple[str, ...],
        keys: pa.Table,
        row_keys: list[str],
        sibling: tuple[str, str],
    ) -> tuple[pa.Table, pa.Table]: ...


def versions_echoes(pipeline: Pipeline) -> bool:
    """Whether ``pipeline``'s echoes are restated with their sibling's versions: two-way
    ``timestamp`` by commit time (:meth:`Pipeline._echoes_last`)."""
    return isinstance(pipeline.source, SiblingVersions) and isinstance(pipeline.source, CurrentRows)


async def versioned_echoes(pipeline: Pipeline, batches: Sequence[ChangeBatch]) -> list[ChangeBatch]:
    """Under two-way ``timestamp``: every echo batch as the present rows its sibling wrote,
    each with the version the sibling recorded for it (``_ts``), and without the keys whose
    present state is not the sibling's write (a person's write since, which this direction's
    stream carries next with its own time).

    Why: an echo's ``_ts`` is its apply transaction's commit time, the latest source time of
    the sibling's whole group; a row that group carried from earlier was judged as that newer
    time, won against a later write on this side and was written back as a "correction", and
    the sides ended a row apart (docs/benchmarks-findings.md, the two-way kill section).
    Present rows, not the stream's images: the recorded version is the sibling's *last* write
    to the key."""
    out = []
    for batch in batches:
        if batch.meta.get(ECHO) and _restatable(batch):
            batch = await _versioned(pipeline, batch)
        out.append(batch)
    return out


async def _versioned(pipeline: Pipeline, batch: ChangeBatch) -> ChangeBatch:
    from syncengine.config.twoway import origin_name, sibling_name, versions_name
    from syncengine.conflicts.rows import row_keys

    source = pipeline.source
    assert isinstance(source, SiblingVersions)
    rows, columns = await _present(pipeline, batch)
    key = list(batch.key)
    rows = rows.with_columns(row_keys(rows, key))
    sibling = sibling_name(pipeline.name)
    commits, recorded = await source.sibling_versions(
        batch.table, batch.key, rows.select(key).to_arrow(), rows["row_key"].to_list(),
        (versions_name(sibling), origin_name(sibling)),
    )  # fmt: skip
    mine = pl.from_arrow(commits)
    assert isinstance(mine, pl.DataFrame)
    mine = mine.cast({k: rows.schema[k] for k in key})
    mine = mine.select(row_keys(mine, key), "_mine")
    versions = pl.from_arrow(recorded)
    assert isinstance(versions, pl.DataFrame)
    versions = versions.unique("row_key", keep="last").select("row_key", "ts", "deleted")
    rows = rows.join(mine, on="row_key", how="left", maintain_order="left").join(
        versions, on="row_key", how="left", maintain_order="left"
    )
    present = pl.col("_op") == OP_UPDATE
    deleted = pl.col("deleted")
    written = (present & pl.col("_mine").fill_null(False) & (deleted == False)) | (  # noqa: E712
        ~present & deleted.fill_null(False)
    )
    rows = rows.filter(written.fill_null(False)).with_columns(pl.col("ts").alias("_ts"))
    return _batch(batch, rows, columns, batch.meta)
