"""A column the target holds in another form than the batch: the batch takes the target's.

*Postgres text.* A Postgres target reads a column back as its Postgres text when a stored value
has no form in the column's Arrow type (``time '24:00'``, ``NaN`` in ``numeric(p,s)``, a 2-D
array, a timestamp past 294247 AD: written from a batch that carried the column as text, or set
at the target by hand; :mod:`syncengine.targets.postgres.read`). The batch's own values of that
column then become Postgres text as well (:func:`syncengine.codecs.pg_text.as_text`, as a group
mixing text and native batches does) and the spec's field a string with ``pg_type``: detection,
the strategies and the write see the column as a batch carrying it as text, so the target's
value is compared, merged, parked and written back exactly, and hashes still restore the native
form wherever a value has one (:func:`syncengine.conflicts.rows.row_hashes`). Only a batch
whose read-back holds such a value takes this path.

*Floating point* (:func:`float_columns`): a column the target holds as a double while the
batch sends integers (a schemaless source's field drifting between int and double).
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from syncengine.codecs import arrow_numbers, pg_carried, pg_text
from syncengine.conflicts.rows import decode_rows, polars_schema
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


def decode_exact(
    texts: pl.Series, spec: TableSpec, extra: dict[str, pl.DataType] | None = None
) -> tuple[TableSpec, pl.DataFrame]:
    """Stored rows (:func:`~syncengine.conflicts.rows.encode_rows`: a parked conflict's row,
    held changes) under ``spec``, for writing: a column of a type that can be text keeps every
    stored value, native where all have a native form, else as Postgres text with the returned
    spec saying so (a text batch's ``24:00`` or ``NaN`` is never a null under a native spec)."""
    kinds = {}
    for fld in spec.schema:
        kind = pg_carried.held_natively(fld) or pg_carried.carried(fld)
        if kind is not None:
            kinds[fld.name] = kind
    schema = {**polars_schema(spec), **(extra or {})}
    if not kinds:
        return spec, decode_rows(texts, schema)
    frame = decode_rows(texts, {**schema, **dict.fromkeys(kinds, pl.String())})
    fields, columns = [], []
    for fld in spec.schema:
        if fld.name in kinds:
            text = _postgres_text(frame[fld.name], kinds[fld.name])
            if pg_text.is_text(fld.type):
                values = text
            else:
                fld, values = pg_carried.restore(text, fld, kinds[fld.name])
            columns.append(pl.Series(fld.name, values))
        fields.append(fld)
    out = TableSpec(spec.name, spec.key, pa.schema(fields, metadata=spec.schema.metadata))
    return out, frame.with_columns(columns)


_BOUNDED = r"^\[-?\d+:-?\d+\]"


def _postgres_text(values: pl.Series, kind) -> pa.Array:  # type: ignore[no-untyped-def]
    """Stored values as Postgres text: a native list was stored as a JSON array (``[1,null]``
    → ``{1,NULL}``); everything else already reads as its type's input text."""
    if not kind.kind.startswith("list"):
        return values.to_arrow().cast(pa.string())
    arrays = (values.str.starts_with("[") & ~values.str.contains(_BOUNDED)).fill_null(False)
    if not arrays.any():
        return values.to_arrow().cast(pa.string())
    element = pl.from_arrow(pa.array([], kind.arrow.value_type)).dtype  # type: ignore[union-attr]
    parsed = values.filter(arrays).str.json_decode(pl.List(element))
    literal = pl.Series(pg_text.as_text(parsed.to_arrow()), dtype=pl.String)
    return values.scatter(arrays.arg_true(), literal).to_arrow().cast(pa.string())


#: a float column type at the target → the Arrow type of its values
_FLOAT_COLUMNS = {"double precision": pa.float64(), "real": pa.float32()}


def float_columns(spec: TableSpec, changes: pl.DataFrame) -> tuple[TableSpec, pl.DataFrame]:
    """``spec`` and ``changes`` with each integer column the target holds as floating point
    (``pg_type`` metadata: a Mongo field whose first documents held doubles) as that float
    type, where every value converts exactly.

    The target row is then read back in the type it is stored in (as an integer, a stored
    0.1 would read as 0, and the key as changed by someone else: a conflict nobody caused);
    the values written are the ones the column would store anyway. A value beyond the float's
    exact range keeps the column an integer (the target then makes it ``numeric``)."""
    wanted = {}
    for fld in spec.schema:
        if fld.name in spec.key:  # a key's type names the row (its shadow row key): as sent
            continue
        pg_type = (fld.metadata or {}).get(b"pg_type", b"").decode()
        if pa.types.is_integer(fld.type) and pg_type in _FLOAT_COLUMNS:
            wanted[fld.name] = _FLOAT_COLUMNS[pg_type]
    return retyped(spec, changes, wanted)


def float_read(spec: TableSpec, read: pa.Table) -> dict[str, pa.DataType]:
    """The columns the target read back with doubles where ``spec`` has integers inside a
    sub-document or an array (:func:`syncengine.targets.postgres.read.rows_to_table`)."""
    out = {}
    for fld in spec.schema:
        if fld.name not in read.column_names or fld.name in spec.key:
            continue
        got = read.schema.field(fld.name).type
        if arrow_numbers.widens_to_floats(fld.type, got):
            out[fld.name] = got
    return out


def retyped(
    spec: TableSpec, changes: pl.DataFrame, wanted: dict[str, pa.DataType]
) -> tuple[TableSpec, pl.DataFrame]:
    """``spec`` and ``changes`` with the ``wanted`` types, for each column whose values all
    convert exactly (Arrow's checked cast: an integer beyond a double's 2^53 does not); the
    others keep theirs."""
    fields, casts = [], []
    for fld in spec.schema:
        kind = wanted.get(fld.name)
        if kind is not None and fld.name in changes.columns:
            try:
                values = changes[fld.name].to_arrow().cast(kind)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                fields.append(fld)
                continue
            casts.append(pl.Series(fld.name, values))
            fld = pa.field(fld.name, kind, fld.nullable, fld.metadata)
        fields.append(fld)
    if not casts:
        return spec, changes
    schema = pa.schema(fields, metadata=spec.schema.metadata)
    return TableSpec(spec.name, spec.key, schema), changes.with_columns(casts)


def as_sent_types(
    sent: TableSpec, read: TableSpec, rows: pl.DataFrame
) -> tuple[TableSpec, pl.DataFrame]:
    """The rows to write of a group whose detection took a float type for integers the
    target stores as doubles (:func:`float_columns`, :func:`float_read`): each such column
    back in the batch's own type where every value written converts exactly, so a Mongo
    target keeps the source's int (only a double the strategy chose, a stored 5.5 kept by
    ``local``, holds the column a double). Text-carried columns stay as detection read them."""
    back = {}
    for fld in read.schema:
        index = sent.schema.get_field_index(fld.name)
        if index < 0:
            continue
        own = sent.schema.field(index).type
        if arrow_numbers.widens_to_floats(own, fld.type):
            back[fld.name] = own
    if not back:
        return read, rows
    return retyped(read, rows, back)
