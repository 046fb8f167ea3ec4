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

import contextlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
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
        sibling: tuple[str, Sequence[str]],
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
    from syncengine.config.twoway import origin_name, sibling_name

    sibling = sibling_name(pipeline.name)
    async with _one_snapshot(pipeline):  # the row and its version: one state of the key
        rows, columns = await _present(pipeline, batch)
        rows = await _with_versions(pipeline, batch, rows, [origin_name(sibling)])
    present = pl.col("_op") == OP_UPDATE
    deleted = pl.col("deleted")
    written = (present & pl.col("_mine").fill_null(False) & (deleted == False)) | (  # noqa: E712
        ~present & deleted.fill_null(False)
    )
    rows = rows.filter(written.fill_null(False)).with_columns(pl.col("ts").alias("_ts"))
    return _batch(batch, rows, columns, batch.meta)


def _one_snapshot(pipeline: Pipeline) -> AbstractAsyncContextManager[None]:
    """The source's reads inside see one snapshot where it can do that (PostgresSource
    ``snapshot_reads``): a sibling's apply committing between reading a key's row and reading
    its recorded version would pair one write's row with the next write's version."""
    reads = getattr(pipeline.source, "snapshot_reads", None)
    return reads() if reads is not None else contextlib.nullcontext()


async def _with_versions(
    pipeline: Pipeline, batch: ChangeBatch, rows: pl.DataFrame, origins: list[str]
) -> pl.DataFrame:
    """``rows`` (the batch's key columns and more) with ``row_key``, ``_mine`` (the key's row
    at the source was last written under one of ``origins``; null: no row) and the version
    recorded for the key in the source by the directions writing into it (``ts``,
    ``deleted``; null: none)."""
    from syncengine.config.twoway import sibling_name, versions_name
    from syncengine.conflicts.rows import row_keys

    source = pipeline.source
    assert isinstance(source, SiblingVersions)
    key = list(batch.key)
    rows = rows.with_columns(row_keys(rows, key))
    commits, recorded = await source.sibling_versions(
        batch.table, batch.key, rows.select(key).to_arrow(), rows["row_key"].to_list(),
        (versions_name(sibling_name(pipeline.name)), origins),
    )  # fmt: skip
    mine = pl.from_arrow(commits)
    assert isinstance(mine, pl.DataFrame)
    mine = mine.cast({k: rows.schema[k] for k in key})
    mine = mine.select(row_keys(mine, key), "_mine")
    versions = pl.from_arrow(recorded)
    assert isinstance(versions, pl.DataFrame)
    versions = versions.unique("row_key", keep="last").select("row_key", "ts", "deleted")
    return rows.join(mine, on="row_key", how="left", maintain_order="left").join(
        versions, on="row_key", how="left", maintain_order="left"
    )


# -- meshes: changes a newer engine write at the source has already superseded ------------


def drops_superseded(pipeline: Pipeline) -> bool:
    """Whether ``pipeline`` is a mesh direction (its reader skips other nodes' writes into
    its source: ``ignore_origins``) that can read its source's versions."""
    ignored = getattr(pipeline.config.source, "ignore_origins", None)
    return bool(ignored) and isinstance(pipeline.source, SiblingVersions)


async def without_superseded(
    pipeline: Pipeline, batches: Sequence[ChangeBatch]
) -> list[ChangeBatch]:
    """A mesh direction's stream batches without the changes older than the engine write
    their key holds at the source now (a row or a delete a direction into the source applied,
    with the version recorded for it).

    Why: such a write may come from a third node, which this direction's reader skips (that
    node sends it everywhere itself), so nothing after the older change in this stream says
    it was superseded. Applied late to the target over a delete a person made there, the
    older change is written *provisionally* (the delete's time is unknown); the pair's
    correction needs the delete to cross to this source and come back as an echo, which never
    happens when the third node's write had already removed the row here: the target kept a
    row every other node had deleted. A change older than a version known to exist can never
    be the last writer, so dropping it changes no outcome; the newer version reaches the
    target by its own link."""
    out = []
    for batch in batches:
        if not batch.meta.get(ECHO) and _restatable(batch):
            batch = await _unsuperseded(pipeline, batch)
        out.append(batch)
    return out


async def _unsuperseded(pipeline: Pipeline, batch: ChangeBatch) -> ChangeBatch:
    from syncengine.config.twoway import origin_name, sibling_name

    key = list(batch.key)
    data = pl.from_arrow(batch.data)
    assert isinstance(data, pl.DataFrame)
    keys = data.select(key).unique(maintain_order=True)
    ignored = list(getattr(pipeline.config.source, "ignore_origins", ()))
    origins = [origin_name(sibling_name(pipeline.name)), *ignored]
    async with _one_snapshot(pipeline):
        state = await _with_versions(pipeline, batch, keys, origins)
    present = pl.col("_mine").is_not_null()
    engine_write = (present & pl.col("_mine") & (pl.col("deleted") == False)) | (  # noqa: E712
        ~present & pl.col("deleted").fill_null(False)
    )
    newer = state.filter(engine_write.fill_null(False)).select(*key, pl.col("ts").alias("__ts"))
    if not newer.height:
        return batch
    judged = data.join(newer, on=key, how="left", nulls_equal=True, maintain_order="left")
    utc = pl.Datetime("us", "UTC")
    keep = pl.col("__ts").is_null() | (pl.col("_ts").cast(utc) >= pl.col("__ts").cast(utc))
    mask = judged.select(keep.alias("keep"))["keep"].to_arrow()
    return batch.replace(batch.data.filter(mask))
