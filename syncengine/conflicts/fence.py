"""``remote`` without read-back: changes pass as sent, guarded only by the position fence.

``remote`` writes the source's row whatever the target holds, so nothing has to be read back,
hashed or kept as a base (unless ``conflicts.audit`` asks to detect and audit the hand edits it
overwrites). What must survive is the position fence: a replayed change at or before the last
position applied to its key is dropped, so a row never moves back in time. Two ways:

* a ``server_fence`` target (Postgres) gets a :class:`ServerFence` and enforces it in the
  statements that apply the data: its staged batch joined with the stored positions, nothing
  sent to the engine and back;
* any other target (Mongo, SQLite-kept state): one read of the stored positions for the batch's
  keys (the shadow, never the target rows), stale changes dropped here, vectorized.

On a Postgres target the checkpoint commits with the data, and a source resumes strictly after
it, so the stored checkpoint is the fence of every in-order change: a stream change at or below
it is dropped, and one at or below the checkpoint committed with it keeps no shadow row at all
(only the parts of a source transaction committed before its end, and snapshot rows, do).

Otherwise the shadow keeps a *slim* row per key: :data:`FENCE_ONLY` for a hash, no base, the
position (a delete: a tombstone, as always). Detection under another strategy later reads such
a row as "in step with the target" (see :mod:`syncengine.conflicts.detect`).
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from syncengine.changes import (
    AT_RESUME,
    BEFORE_PREFIX,
    DENSE_FENCE,
    META_COLUMNS,
    OP_DELETE,
    OP_READ,
    OP_TRUNCATE,
    REPLAYED,
    SETTLED,
    ChangeBatch,
)
from syncengine.config.models import ConflictsConfig
from syncengine.conflicts.rows import as_pg_text
from syncengine.targets.base import ServerFence, ShadowUpdate, TableSpec, Target
from syncengine.targets.shadow import FENCE_ONLY


def reads_nothing(config: ConflictsConfig, target: Target) -> bool:
    """Whether this table's batches skip detection: ``remote`` without ``audit``, into a target
    that mirrors rows (a change log keeps no shadow at all)."""
    return config.strategy == "remote" and not config.audit and not target.change_log


async def fenced(
    target: Target,
    spec: TableSpec,
    changes: pl.DataFrame,
    keys: pl.Series,
    meta: Mapping[str, object],
    *,
    fence: bool,
    truncated: bool,
    stream: str | None = None,
) -> tuple[pl.DataFrame, ShadowUpdate]:
    """The rows to write and the shadow update for ``changes`` (one per key, aligned with their
    row ``keys``). ``fence``: the source's positions sort; ``truncated``: the batch empties the
    table first (its shadow goes with it, nothing can be stale); ``stream``: the source stream
    whose stored checkpoint a server fence may use as the floor (see :class:`ServerFence`)."""
    record_reads = not meta.get(AT_RESUME)
    if getattr(target, "server_fence", False):
        return changes, server_request(keys.to_arrow(), meta, fence=fence, stream=stream)
    op = changes["_op"]
    n = changes.height
    record = (op != OP_READ) | record_reads
    stale = pl.repeat(False, n, eager=True)
    fresh = pl.repeat(truncated, n, eager=True)
    if fence and not truncated and n and record.any():
        hashes, positions = await _stored(target, spec, keys, record)
        stale = ((op != OP_READ) & (changes["_pos"] <= positions)).fill_null(False)
        fresh = hashes.is_null() & positions.is_null()
    upserts = pl.DataFrame(
        {
            "row_key": keys,
            "row_hash": pl.select(
                pl.when(op == OP_DELETE).then(None).otherwise(pl.lit(FENCE_ONLY))
            ).to_series(),
            "base": pl.repeat(None, n, dtype=pl.String, eager=True),
            "position": changes["_pos"],
            "fresh": fresh,
        },
        schema={"row_key": pl.String, "row_hash": pl.String, "base": pl.String,
                "position": pl.String, "fresh": pl.Boolean},
    ).filter(~stale & record)  # fmt: skip
    rows = changes.filter(~stale)
    if fence:
        return rows, ShadowUpdate(upserts=upserts.to_arrow())
    gone = upserts["row_hash"].is_null()
    deletes = upserts.filter(gone)["row_key"].to_list()
    return rows, ShadowUpdate(upserts=upserts.filter(~gone).to_arrow(), deletes=deletes)


def server_request(
    keys: pa.Array | pa.ChunkedArray,
    meta: Mapping[str, object],
    *,
    fence: bool,
    stream: str | None,
) -> ShadowUpdate:
    """The shadow update of a ``server_fence`` target: the :class:`ServerFence` for the rows
    of ``keys`` (their canonical row keys, in order), enforced by the target itself."""
    floor = stream if fence and not meta.get(REPLAYED) else None
    request = ServerFence(
        keys, enforce=fence, snapshot_rows=not meta.get(AT_RESUME), stream=floor,
        sparse=floor is not None and not meta.get("snapshot") and not meta.get(DENSE_FENCE),
        settled=settled if fence and isinstance(settled := meta.get(SETTLED), str) else None,
    )  # fmt: skip
    return ShadowUpdate(fence=request)


def plain_rows(spec: TableSpec, batch: ChangeBatch) -> pa.Table | None:
    """What :func:`syncengine.conflicts.resolver.normalize` makes of ``batch``, built in
    Arrow, when it needs no more than column order and types: every spec column present, no
    unsent value, no truncate, one change per key (a single key column, so one Arrow count
    tells). None otherwise (the caller takes the general path). A column already of the
    spec's type, or of its other-width string form, is passed by reference: the general
    path's Polars round trips copied every value of the batch several times over."""
    data = batch.data
    names = data.column_names
    if batch.unsent_columns or len(spec.key) != 1 or spec.key[0] not in names:
        return None
    ops = data.column("_op")
    if pc.any(pc.equal(ops, OP_TRUNCATE)).as_py():
        return None
    try:
        distinct = pc.count_distinct(data.column(spec.key[0]), mode="all").as_py()
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None  # a key type Arrow cannot count (a nested document): the general path
    if distinct != data.num_rows:
        return None  # a repeated (or repeatedly null) key: the general path compacts
    columns, fields = [], []
    for want in spec.schema:
        if want.name not in names:
            return None
        column = data.column(want.name)
        if column.type != want.type and _LARGE.get(column.type) != want.type:
            if as_pg_text(column.type, want):
                return None  # a native value for a column carried as text: canonical's case
            column = column.cast(want.type, safe=False)
        columns.append(column)
        fields.append(pa.field(want.name, column.type))
    for name in [*META_COLUMNS, *(n for n in names if n.startswith(BEFORE_PREFIX))]:
        columns.append(data.column(name))
        fields.append(pa.field(name, data.schema.field(name).type))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


#: the string types and their large-offset forms (Polars hands back the latter)
_LARGE = {pa.string(): pa.large_string(), pa.binary(): pa.large_binary()}


async def _stored(
    target: Target, spec: TableSpec, keys: pl.Series, wanted: pl.Series
) -> tuple[pl.Series, pl.Series]:
    """(hash, position) of the stored shadow row per key (null: none); only ``wanted`` keys
    are asked for."""
    found = await target.read_shadow(spec.name, keys.filter(wanted).to_list())
    stored = pl.from_arrow(found.select(["row_key", "row_hash", "position"]))
    assert isinstance(stored, pl.DataFrame)
    stored = stored.with_columns(pl.col("row_hash", "position").cast(pl.String))
    joined = keys.to_frame("row_key").join(
        stored.unique(subset="row_key", keep="last"), on="row_key", how="left",
        maintain_order="left",
    )  # fmt: skip
    return joined["row_hash"], joined["position"]
