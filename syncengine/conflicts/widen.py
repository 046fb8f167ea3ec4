"""A column the target read back as Postgres text: the batch carries it as text too.

A Postgres target reads a column back as its Postgres text when a stored value has no form in
the column's Arrow type (``time '24:00'``, ``NaN`` in ``numeric(p,s)``, a 2-D array, a
timestamp past 294247 AD: written from a batch that carried the column as text, or set at the
target by hand; :mod:`syncengine.targets.postgres.read`). The batch's own values of that column
then become Postgres text as well (:func:`syncengine.codecs.pg_text.as_text`, as a group mixing
text and native batches does) and the spec's field a string with ``pg_type``: detection, the
strategies and the write see the column as a batch carrying it as text, so the target's value
is compared, merged, parked and written back exactly, and hashes still restore the native form
wherever a value has one (:func:`syncengine.conflicts.rows.row_hashes`). Only a batch whose
read-back holds such a value takes this path.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from syncengine.codecs import pg_carried, pg_text
from syncengine.targets.base import TableSpec


def text_read(spec: TableSpec, read: pa.Table) -> list[pa.Field]:
    """The read's Postgres-text fields for columns ``spec`` holds natively."""
    out = []
    for fld in spec.schema:
        if fld.name not in read.column_names or pg_text.is_text(fld.type):
            continue
        got = read.schema.field(fld.name)
        if pg_text.is_text(got.type) and pg_carried.carried(got) is not None:
            out.append(got)
    return out


def widen(
    spec: TableSpec, changes: pl.DataFrame, fields: list[pa.Field]
) -> tuple[TableSpec, pl.DataFrame]:
    """``spec`` with ``fields`` in place of its own, and ``changes`` with those columns as the
    Postgres text of their values (nulls stay null)."""
    by_name = {f.name: f for f in fields}
    schema = pa.schema([by_name.get(f.name, f) for f in spec.schema], metadata=spec.schema.metadata)
    texts = [
        pl.Series(name, pg_text.as_text(changes[name].to_arrow()), pl.String)
        for name in by_name
        if name in changes.columns
    ]
    return TableSpec(spec.name, spec.key, schema), changes.with_columns(texts)
