"""ChangeBatch: the one unit of data every stage passes on.

A ChangeBatch holds the changes of one source table or collection as a single Arrow table:

* the row image, one column per source column (after mapping: per target field);
* metadata columns :data:`META_COLUMNS` — ``_op`` (c insert, u update, d delete, r snapshot
  read, t truncate), ``_pos`` (source position as an order-preserving string: a zero-padded
  LSN, a resume token), ``_ts`` (commit time, UTC), ``_txid`` (source transaction id);
* optionally the before-image, as ``_before.<column>`` columns (Postgres REPLICA IDENTITY
  FULL / old key, Mongo ``fullDocumentBeforeChange``);
* for every column that the source did not send in at least one row (Postgres unchanged TOAST,
  Mongo partial updates), a boolean ``_unsent.<column>`` column that is true where the value
  was not sent. An unsent value is never a NULL: it means "keep what the target has".

Keeping all of it in one table means filters, slices and concatenations keep the parts
aligned for free, and :meth:`ChangeBatch.to_polars` is zero-copy.

Apply semantics (what a target must do, and what :func:`compact` preserves):

* ``c`` / ``r``: the row becomes exactly the sent columns (insert or replace);
* ``u``: the sent columns overwrite the existing row (an absent row is created from them);
* ``d``: the row is removed (removing an absent row is not an error);
* ``t``: every row of the table is removed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

import pyarrow as pa

from syncengine.errors import FatalError

if TYPE_CHECKING:
    import polars as pl
else:
    from syncengine.deferred import polars as pl

OP_INSERT = "c"
OP_UPDATE = "u"
OP_DELETE = "d"
OP_READ = "r"
OP_TRUNCATE = "t"
OPS = (OP_INSERT, OP_UPDATE, OP_DELETE, OP_READ, OP_TRUNCATE)

ECHO = "echo"
"""Batch meta: rows of a transaction the engine applied itself (two-way sync: the other
direction's write, recognised by its replication origin). Never applied back: they tell the
shadow what both sides now hold (syncengine.conflicts.resolver.ConflictResolver.refresh)."""
AT_RESUME = "at_resume"
"""Batch meta: every ``r`` row sits at the position the stream resumes from (a chunk of an
exported snapshot), so no change at or before it can follow and its rows need no per-key
position fence (syncengine.conflicts.fence)."""
REPLAYED = "replayed"
"""Batch meta: changes applied out of stream order: dead letters sent through the pipeline
again (``deadletters replay``), the changes a paused table held, released on resume, and the
rows of a table snapshotted while the stream runs (``resnapshot``, an added table). Their
positions may lie below the checkpoint, so the checkpoint must not fence them; the per-key
position fence does, and they record it. Letters that a later change of their key superseded
are not replayed at all."""
DENSE_FENCE = "dense_fence"
"""Batch meta: stream changes of a table that a live table snapshot is copying. Each records
its key's position (no sparse fence), so a snapshot row older than a change already applied
is dropped, whichever arrives first (:mod:`syncengine.runtime.tableops`)."""

LIVE_COPY = "live_copy"
"""Batch meta: rows of a table snapshotted while the stream runs (:data:`REPLAYED` too). Such a
row needs its key's position fence only while the stream's committed checkpoint is below its
position; the pipeline sets :data:`SETTLED` where it can tell (syncengine.runtime.pipeline)."""
SETTLED = "settled"
"""Batch meta: a position the pipeline's stream had committed as its checkpoint when the batch
was handed to the target, with no held (paused) change of the table that could be released
over it. A :data:`LIVE_COPY` row at or below it keeps no fence row: every change of its key up
to there was applied before it, and a replay starts after the checkpoint (targets/postgres/
floor.py)."""
DRAIN_END = "drain_end"
"""Batch meta: the last batch of a stream bounded by an end position (``sync``'s drain). Once
its group committed, the drain is complete, whether or not the stream's own end has arrived
yet (a decode process keeps its stream open for that group's acknowledgement): a stop
requested after that interrupted nothing (syncengine.runtime.runner.sync_once)."""

META_COLUMNS = ("_op", "_pos", "_ts", "_txid")
BEFORE_PREFIX = "_before."
UNSENT_PREFIX = "_unsent."


def reserved(names: Iterable[str]) -> list[str]:
    """The names among ``names`` that a batch's own columns take (:data:`META_COLUMNS`,
    before-images, unsent marks): a source column of such a name collided with them (the
    sync stopped with a traceback on the duplicate field)."""
    return [n for n in names if is_reserved(n)]


def is_reserved(name: str) -> bool:
    return name in META_COLUMNS or name.startswith((BEFORE_PREFIX, UNSENT_PREFIX))


def reserved_message(table: str, names: Sequence[str]) -> str:
    """What is wrong with a source table whose columns take reserved names, and the fix."""
    return (
        f"{table}: column(s) {', '.join(names)} have names the engine keeps for its own "
        f"columns ({', '.join(META_COLUMNS)}, {BEFORE_PREFIX}*, {UNSENT_PREFIX}*), so it "
        "cannot be synced as it is; rename them at the source (a Postgres ALTER TABLE … "
        "RENAME COLUMN, a Mongo $rename) or leave it out"
    )


META_SCHEMA = pa.schema(
    [
        pa.field("_op", pa.string(), nullable=False),
        pa.field("_pos", pa.string(), nullable=False),
        pa.field("_ts", pa.timestamp("us", tz="UTC")),
        pa.field("_txid", pa.int64()),
    ]
)


def is_data_column(name: str) -> bool:
    """True for row-image columns (not metadata, before-image or unsent flags)."""
    return not (
        name in META_COLUMNS or name.startswith(BEFORE_PREFIX) or name.startswith(UNSENT_PREFIX)
    )


def lsn_to_pos(lsn: int) -> str:
    """A Postgres LSN as a ``_pos`` string that sorts in LSN order."""
    return f"{lsn:016X}"


def pos_to_lsn(pos: str) -> int:
    return int(pos, 16)


@dataclass(frozen=True)
class ChangeBatch:
    """Changes of one source table/collection, Arrow-backed. See the module docstring."""

    table: str
    data: pa.Table
    key: tuple[str, ...] = ()
    #: free-form facts a stage wants to pass on (e.g. relation OID, schema version)
    meta: Mapping[str, object] = field(default_factory=dict)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        table: str,
        rows: pa.Table,
        *,
        ops: Sequence[str] | pa.Array,
        positions: Sequence[str] | pa.Array,
        ts: Sequence[datetime | None] | pa.Array | None = None,
        txid: Sequence[int | None] | pa.Array | None = None,
        key: Iterable[str] = (),
        before: pa.Table | None = None,
        unsent: Mapping[str, Sequence[bool] | pa.Array] | None = None,
        meta: Mapping[str, object] | None = None,
    ) -> ChangeBatch:
        """Assemble a batch from a row-image table and per-row metadata arrays."""
        taken = reserved(rows.column_names)
        if taken:
            raise FatalError(reserved_message(table, taken))
        n = rows.num_rows
        fields: dict[str, pa.Field] = {f.name: f for f in rows.schema}  # keeps pg_type/bson_type
        columns: dict[str, pa.Array | pa.ChunkedArray] = {
            name: rows.column(name) for name in rows.column_names
        }
        columns["_op"] = _as_array(ops, pa.string(), n)
        columns["_pos"] = _as_array(positions, pa.string(), n)
        columns["_ts"] = _as_array(ts, pa.timestamp("us", tz="UTC"), n)
        columns["_txid"] = _as_array(txid, pa.int64(), n)
        if before is not None:
            for f in before.schema:
                columns[BEFORE_PREFIX + f.name] = before.column(f.name)
                fields[BEFORE_PREFIX + f.name] = f.with_name(BEFORE_PREFIX + f.name)
        for name, mask in (unsent or {}).items():
            columns[UNSENT_PREFIX + name] = _as_array(mask, pa.bool_(), n)
        schema = pa.schema(
            [fields.get(name) or pa.field(name, col.type) for name, col in columns.items()]
        )
        return cls(table, pa.table(columns, schema=schema), tuple(key), dict(meta or {}))

    @classmethod
    def from_polars(
        cls,
        frame: pl.DataFrame,
        table: str,
        key: Iterable[str] = (),
        meta: Mapping[str, object] | None = None,
    ) -> ChangeBatch:
        return cls(table, frame.to_arrow(), tuple(key), dict(meta or {}))

    def to_polars(self) -> pl.DataFrame:
        frame = pl.from_arrow(self.data, rechunk=False)
        assert isinstance(frame, pl.DataFrame)
        return frame

    def replace(self, data: pa.Table | pl.DataFrame) -> ChangeBatch:
        """The same batch identity (table, key, meta) around new data. An Arrow table is
        recognised first: asking Polars would load it on paths that never use it."""
        if not isinstance(data, pa.Table):
            data = data.to_arrow()
        return ChangeBatch(self.table, data, self.key, self.meta)

    def marked(self, marks: Mapping[str, Mapping[bytes, bytes]]) -> ChangeBatch:
        """The batch with ``marks`` (column → metadata entries) added to its columns'
        field metadata; the data is not copied."""
        fields = [
            f.with_metadata({**(f.metadata or {}), **marks[f.name]}) if f.name in marks else f
            for f in self.data.schema
        ]
        schema = pa.schema(fields, metadata=self.data.schema.metadata)
        return self.replace(pa.Table.from_arrays(self.data.columns, schema=schema))

    # -- views --------------------------------------------------------------------------

    @property
    def num_rows(self) -> int:
        return int(self.data.num_rows)

    def __len__(self) -> int:
        return int(self.data.num_rows)

    @property
    def data_columns(self) -> list[str]:
        return [name for name in self.data.column_names if is_data_column(name)]

    @property
    def rows(self) -> pa.Table:
        """The row image alone."""
        return self.data.select(self.data_columns)

    @property
    def before(self) -> pa.Table | None:
        names = [n for n in self.data.column_names if n.startswith(BEFORE_PREFIX)]
        if not names:
            return None
        table = self.data.select(names)
        return table.rename_columns([n[len(BEFORE_PREFIX) :] for n in names])

    @property
    def unsent_columns(self) -> list[str]:
        """Columns that are unsent in at least one row."""
        return [
            n[len(UNSENT_PREFIX) :] for n in self.data.column_names if n.startswith(UNSENT_PREFIX)
        ]

    def unsent_mask(self, column: str) -> pa.ChunkedArray | None:
        name = UNSENT_PREFIX + column
        return self.data.column(name) if name in self.data.column_names else None

    @property
    def ops(self) -> pa.ChunkedArray:
        return self.data.column("_op")

    @property
    def first_position(self) -> str | None:
        return self.data.column("_pos")[0].as_py() if self.num_rows else None

    @property
    def last_position(self) -> str | None:
        """The position to checkpoint once this batch is committed at the target."""
        return self.data.column("_pos")[-1].as_py() if self.num_rows else None

    def compact(self) -> ChangeBatch:
        return compact(self)


def _as_array(values: object, type_: pa.DataType, n: int) -> pa.Array | pa.ChunkedArray:
    if values is None:
        return pa.nulls(n, type_)
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values if values.type == type_ else values.cast(type_)
    return pa.array(values, type=type_)


def concat_batches(batches: Sequence[ChangeBatch]) -> ChangeBatch:
    """Concatenate batches of one table in order; schemas are unified.

    A row-image column a batch lacks was not sent by its rows (a document without the field):
    it is null and unsent there. Unsent masks missing from a batch that has the column are
    filled with ``False`` (those rows sent the value). Field metadata is kept, and a Mongo
    field typed differently by two batches is typed as one batch would type it
    (:func:`_bson_retyped`).
    """
    if not batches:
        raise ValueError("concat_batches needs at least one batch")
    first = batches[0]
    if len(batches) == 1:
        return first
    combined: pa.Table
    schema = first.data.schema
    if not first.unsent_columns and all(
        b.data.schema.equals(schema, check_metadata=True) for b in batches[1:]
    ):
        # one schema, no masks to fill: the parts' columns chained as they are, no copy
        combined = pa.concat_tables([b.data for b in batches])
    else:
        parts = _unsent_where_absent(_text_where_any_is_text(_bson_retyped(batches)))
        joined = pl.concat([b.to_polars() for b in parts], how="diagonal_relaxed")
        fills = [
            pl.col(name).fill_null(False)
            for name in joined.columns
            if name.startswith(UNSENT_PREFIX)
        ]
        if fills:
            joined = joined.with_columns(fills)
        combined = _with_field_metadata(joined.to_arrow(), parts)
    if first.meta.get(AT_RESUME) and not all(b.meta.get(AT_RESUME) for b in batches):
        # a claim about every row (no per-key fence needed) holds only if every part makes it
        meta = {k: v for k, v in first.meta.items() if k != AT_RESUME}
        return ChangeBatch(first.table, first.data, first.key, meta).replace(combined)
    return first.replace(combined)


def _unsent_where_absent(batches: Sequence[ChangeBatch]) -> Sequence[ChangeBatch]:
    """Each batch with an unsent mask for every row-image column some batch lacks: ``True``
    in the batches without the column, ``False`` in those that carry it unmasked. Joined
    without them, a document's missing field came out as a null it never had (a Mongo
    target wrote ``field: null``; a Postgres update overwrote the column with null)."""
    names = [{n for n in b.data.column_names if is_data_column(n)} for b in batches]
    partial = set().union(*names) - set.intersection(*names)
    if not partial:
        return batches
    out = []
    for batch, carried in zip(batches, names, strict=True):
        table, n = batch.data, batch.num_rows
        for column in sorted(partial):
            if UNSENT_PREFIX + column not in table.column_names:
                absent = pa.repeat(pa.scalar(column not in carried), n)
                table = table.append_column(UNSENT_PREFIX + column, absent)
        out.append(batch.replace(table))
    return out


def _bson_retyped(batches: Sequence[ChangeBatch]) -> Sequence[ChangeBatch]:
    """Mongo batches whose documents type a field differently, typed as one batch would
    (:func:`syncengine.codecs.bson_arrow.retype_across`); other batches as they are."""
    if not any(b"bson_type" in (f.metadata or {}) for b in batches for f in b.data.schema):
        return batches
    from syncengine.codecs.bson_arrow import retype_across

    tables = retype_across([b.data for b in batches])
    return [b if t is b.data else b.replace(t) for b, t in zip(batches, tables, strict=True)]


#: numeric ``bson_type``s a later part of a join may widen (:func:`_with_field_metadata`)
_NARROW_NUMBERS = frozenset({b"int", b"long"})


def _with_field_metadata(table: pa.Table, parts: Sequence[ChangeBatch]) -> pa.Table:
    """``table`` (joined through Polars, which drops Arrow field metadata) with each column
    that carries metadata in a part (at any depth) typed as the first part that types it alike
    (Polars' large offsets aside). The metadata says what a value is (``bson_type=objectId`` on
    a string, also on a list's items; ``pg_type`` on text a Postgres value has no Arrow form
    for): lost, a Mongo target wrote ObjectIds as strings and JSON as text. A number typed
    ``int`` in one part and ``long`` in another says ``long``, as one decode of both would."""
    from syncengine.codecs.bson_types import wider_bson_field

    fields = []
    changed = False
    for f in table.schema:
        chosen = None
        for part in parts:
            index = part.data.schema.get_field_index(f.name)
            if index < 0:
                continue
            known = part.data.schema.field(index)
            if _has_metadata(known) and _same_type(known.type, f.type):
                chosen = known if chosen is None else wider_bson_field(chosen, known)
                if (chosen.metadata or {}).get(b"bson_type") not in _NARROW_NUMBERS:
                    break  # nothing a later part says can change it
        if chosen is not None:
            f, changed = chosen, True
        fields.append(f)
    if not changed:
        return table
    return table.cast(pa.schema(fields, table.schema.metadata))


def _has_metadata(field: pa.Field) -> bool:
    if field.metadata:
        return True
    type_ = field.type
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return _has_metadata(type_.value_field)
    if pa.types.is_struct(type_):
        return any(_has_metadata(child) for child in type_)
    return False


def _same_type(a: pa.DataType, b: pa.DataType) -> bool:
    return bool(a == b or _small_offsets(a) == _small_offsets(b))


def _small_offsets(type_: pa.DataType) -> pa.DataType:
    """``type_`` with every large-offset form (Polars' strings, binaries and lists) replaced by
    the 32-bit one, at any depth, and list items named alike: for comparing only."""
    if pa.types.is_large_string(type_):
        return pa.string()
    if pa.types.is_large_binary(type_):
        return pa.binary()
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return pa.list_(_small_offsets(type_.value_type))
    if pa.types.is_struct(type_):
        return pa.struct([f.with_type(_small_offsets(f.type)) for f in type_])
    return type_


#: the types Polars hands back for Arrow's 32-bit-offset ones
LARGE_FORMS = {pa.string(): pa.large_string(), pa.binary(): pa.large_binary()}


def _text_where_any_is_text(batches: Sequence[ChangeBatch]) -> Sequence[ChangeBatch]:
    """A column that some batch carries as text (a Postgres value with no Arrow form, see
    :mod:`syncengine.codecs.pg_text`) becomes that text in the others too."""
    from syncengine.codecs import pg_text

    tables = pg_text.unify_text([b.data for b in batches])
    return [b if t is b.data else b.replace(t) for b, t in zip(batches, tables, strict=True)]


def compact(batch: ChangeBatch) -> ChangeBatch:
    """Reduce many changes to one key to their net effect, in one vectorized pass.

    Per key, the *barrier* is the last insert, snapshot read or delete; everything before it is
    superseded. The result row is:

    * a delete, when the barrier is the last change;
    * otherwise an insert (barrier c, or a delete followed by changes: a replace) or a snapshot
      read (barrier r) or an update (no barrier), whose every column holds the last value that
      was *sent* at or after the barrier (rows after a delete barrier only). A column never sent
      there stays unsent.

    A truncate removes everything before it; the truncate row itself is kept first. The output
    is ordered by each key's last change, and ``_pos``/``_ts``/``_txid`` come from that change.
    Before-image columns keep the first before-image of each key (the state before the batch).
    """
    if not batch.key:
        raise ValueError(f"cannot compact {batch.table}: no key columns")
    from syncengine import lastchange

    if lastchange.applies(batch):  # every column sent, no truncate: each key's last row
        return lastchange.compact_sent(batch)
    frame = batch.to_polars().with_row_index("__seq")
    key = list(batch.key)
    prefix = pl.DataFrame()

    truncates = frame.filter(pl.col("_op") == OP_TRUNCATE)
    if truncates.height:
        last_t = truncates["__seq"][-1]
        prefix = frame.filter(pl.col("__seq") == last_t)
        frame = frame.filter(pl.col("__seq") > last_t)

    is_barrier = pl.col("_op").is_in([OP_INSERT, OP_READ, OP_DELETE])
    barrier_seq = pl.when(is_barrier).then(pl.col("__seq")).max().over(key)
    last_seq = pl.col("__seq").max().over(key)
    frame = frame.with_columns(barrier_seq.alias("__barrier"), last_seq.alias("__last"))
    barrier_op = frame.filter(pl.col("__seq") == pl.col("__barrier")).select(
        *key, pl.col("_op").alias("__barrier_op")
    )
    # Keep the barrier row unless it is a delete followed by later changes.
    keep = (
        pl.col("__barrier").is_null()
        | (pl.col("__seq") > pl.col("__barrier"))
        | (
            (pl.col("__seq") == pl.col("__barrier"))
            & ((pl.col("_op") != OP_DELETE) | (pl.col("__seq") == pl.col("__last")))
        )
    )
    before_cols = [c for c in frame.columns if c.startswith(BEFORE_PREFIX)]
    firsts = (
        frame.group_by(key, maintain_order=True).agg([pl.col(c).first() for c in before_cols])
        if before_cols
        else None
    )
    segment = frame.filter(keep)

    unsent = {c[len(UNSENT_PREFIX) :] for c in frame.columns if c.startswith(UNSENT_PREFIX)}
    aggs: list[pl.Expr] = []
    for name in frame.columns:
        if name in key or name in before_cols or name.startswith("__"):
            continue
        if name.startswith(UNSENT_PREFIX):
            aggs.append(pl.col(name).fill_null(False).all())
        elif name in unsent:
            sent = ~pl.col(UNSENT_PREFIX + name).fill_null(False)
            aggs.append(pl.col(name).filter(sent).last())
        else:
            aggs.append(pl.col(name).last())
    aggs.append(pl.col("__seq").last())
    out = segment.group_by(key, maintain_order=True).agg(aggs)
    out = out.join(barrier_op, on=key, how="left", nulls_equal=True)
    last_op = pl.col("_op")
    barrier = pl.col("__barrier_op")
    out = out.with_columns(
        pl.when(last_op == OP_DELETE)
        .then(pl.lit(OP_DELETE))
        .when(barrier == OP_DELETE)
        .then(pl.lit(OP_INSERT))
        .when(barrier.is_not_null())
        .then(barrier)
        .otherwise(pl.lit(OP_UPDATE))
        .alias("_op")
    )
    if firsts is not None:
        out = out.join(firsts, on=key, how="left", nulls_equal=True)
    out = out.sort("__seq").drop("__seq", "__barrier_op")
    out = out.select([c for c in batch.data.column_names if c in out.columns])
    if prefix.height:
        prefix = prefix.select(batch.data.column_names)
        out = pl.concat([prefix, out], how="vertical_relaxed")
    return batch.replace(out)
