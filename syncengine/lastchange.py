"""Compaction of a batch whose every change sent every column: each key's last change, taken.

:func:`syncengine.changes.compact` computes, per key and per column, the last value *sent* at
or after the key's barrier (its last insert, read or delete) in one Polars pass over the whole
batch: a window over every row, a filter, a group-by aggregating every column, two joins and a
sort. That pass cost about 0.8 µs a change on the CDC drain's batches (10,000 rows of eight
columns, a third of them repeating a key), the largest single cost of a group after decoding.

Where no column is unsent in any row (``_unsent.*`` absent: Postgres without unchanged TOAST,
Mongo full documents) and no truncate occurs, that per-column aggregate is always the key's
*last* row: every row sends every column, and the last row always belongs to the barrier's
segment. So the result is the last row of each key, in the order of those last rows, with only
two things recomputed: ``_op`` (a delete stays a delete; after a delete an insert; otherwise
the barrier's op, or an update when there is none) and the before-image columns (each key's
first one, the state before the batch). This module finds those rows from the key and ``_op``
columns alone and takes them from the Arrow table: the values are never converted. A batch
without a repeated key is returned as it is. The keys become integer codes (Arrow's dictionary
encoding) and each key's first, last and last barrier rows are NumPy reductions over them: a
Polars group-by did it before, whose fixed cost (about 0.5 ms) was most of the compaction of a
live group's small batches (0.1 ms now; a 10,000-row drain batch 1.6 → 1.0 ms). Float keys
(-0.0, NaN) and types Arrow cannot encode keep the group-by.

The general pass stays the answer for everything else (unsent columns, truncates); the
property tests in tests/unit/test_changes_compaction.py hold both to the row-by-row reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
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

if TYPE_CHECKING:
    import polars as pl
else:
    from syncengine.deferred import polars as pl

_SEQ, _FIRST, _LAST, _BARRIER = "__seq", "__first", "__last", "__barrier"


def applies(batch: ChangeBatch) -> bool:
    """Whether :func:`compact_sent` gives :func:`syncengine.changes.compact`'s result."""
    names = batch.data.column_names
    if any(n.startswith(UNSENT_PREFIX) for n in names):
        return False
    return not pc.any(pc.equal(batch.ops, OP_TRUNCATE)).as_py()


def compact_sent(batch: ChangeBatch) -> ChangeBatch:
    """The compacted batch (see the module docstring); only where :func:`applies`."""
    key = list(batch.key)
    data = batch.data
    coded = _key_codes(data, key)  # its count of distinct keys says whether any repeats
    if coded is None and len(key) == 1 and _distinct(data.column(key[0])) == len(data):
        return batch  # no key repeats: one Arrow count decides
    rows = _last_rows(data, key) if coded is None else _last_rows_coded(data, *coded)
    if rows is None:
        return batch  # no key repeats: nothing to compact
    first, last, barrier = rows
    ops = data.column("_op").combine_chunks()
    last_op, barrier_op = ops.take(last), ops.take(barrier)
    new_ops = pc.if_else(
        pc.equal(last_op, OP_DELETE),
        pa.scalar(OP_DELETE, ops.type),
        pc.if_else(
            pc.fill_null(pc.equal(barrier_op, OP_DELETE), False),
            pa.scalar(OP_INSERT, ops.type),
            pc.coalesce(barrier_op, pa.scalar(OP_UPDATE, ops.type)),
        ),
    )
    out = data.take(last)
    ops_at = out.schema.get_field_index("_op")
    out = out.set_column(ops_at, out.schema.field(ops_at), new_ops)
    before = [n for n in data.column_names if n.startswith(BEFORE_PREFIX)]
    if before:
        firsts = data.select(before).take(first)
        for name in before:
            at = out.schema.get_field_index(name)
            out = out.set_column(at, out.schema.field(at), firsts.column(name))
    return batch.replace(out)


#: per key, in the order of the keys' last rows: the row numbers of its first row, its last
#: row and its last barrier row (null: none), as Arrow arrays for ``take``
_Rows = tuple[pa.Array, pa.Array, pa.Array]


def _key_codes(data: pa.Table, key: list[str]) -> tuple[np.ndarray, int] | None:
    """One integer per row in ``[0, count)``, equal exactly where the rows' keys are equal
    (nulls equal to each other, as a group-by has them), and ``count``; None for a key type
    this cannot encode exactly (floats: -0.0 and NaN; types Arrow cannot dictionary-encode)."""
    codes, count = np.zeros(len(data), np.int64), 1
    for name in key:
        column = data.column(name)
        if pa.types.is_floating(column.type):
            return None
        try:
            encoded = pc.dictionary_encode(column.combine_chunks(), null_encoding="encode")
        except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
            return None
        indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        codes = codes * len(encoded.dictionary) + indices
        count *= len(encoded.dictionary)
        if len(key) > 1:  # densified, so the combined code stays below the row count
            _, codes = np.unique(codes, return_inverse=True)
            count = int(codes.max()) + 1 if len(codes) else 0
    return codes, count


def _last_rows_coded(data: pa.Table, codes: np.ndarray, count: int) -> _Rows | None:
    """:data:`_Rows` from the key codes with NumPy: a group-by's fixed cost (a thread pool's
    round, hundreds of µs) was most of a live group's compaction, whose batches hold a few
    dozen rows."""
    n = len(codes)
    if count == n:
        return None
    seq = np.arange(n, dtype=np.int64)
    first = np.full(count, n, np.int64)
    np.minimum.at(first, codes, seq)
    last = np.full(count, -1, np.int64)
    np.maximum.at(last, codes, seq)
    is_barrier = pc.is_in(data.column("_op"), pa.array([OP_INSERT, OP_READ, OP_DELETE]))
    rows = np.flatnonzero(is_barrier.to_numpy(zero_copy_only=False))
    barrier = np.full(count, -1, np.int64)
    np.maximum.at(barrier, codes[rows], rows)
    order = np.argsort(last, kind="stable")
    barrier = barrier[order]
    return (
        pa.array(first[order]),
        pa.array(last[order]),
        pa.array(barrier, mask=barrier < 0),
    )


def _last_rows(data: pa.Table, key: list[str]) -> _Rows | None:
    """:data:`_Rows` by a Polars group-by (key types :func:`_key_codes` cannot encode)."""
    frame = pl.from_arrow(data.select([*key, "_op"]), rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    op = pl.col("_op")
    barrier = op.is_in([OP_INSERT, OP_READ, OP_DELETE])
    seq = pl.int_range(pl.len(), dtype=pl.Int64)
    per_key = (
        frame.with_columns(seq.alias(_SEQ))
        .group_by(key)
        .agg(
            pl.col(_SEQ).first().alias(_FIRST),
            pl.col(_SEQ).last().alias(_LAST),
            pl.col(_SEQ).filter(barrier).last().alias(_BARRIER),
        )
    )
    if per_key.height == frame.height:
        return None
    per_key = per_key.sort(_LAST)
    return (
        per_key[_FIRST].to_arrow(),
        per_key[_LAST].to_arrow(),
        per_key[_BARRIER].to_arrow(),
    )


def _distinct(column: pa.ChunkedArray) -> int | None:
    """How many distinct values (a null counts once); None for a type Arrow cannot count."""
    try:
        return int(pc.count_distinct(column, mode="all").as_py())
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
