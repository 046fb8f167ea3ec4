"""A target table read through ``COPY … TO STDOUT (FORMAT csv)``, converted column-wise.

:func:`~syncengine.targets.postgres.read.scan` fetches rows through a cursor and builds Arrow
per value (``rows_to_table``), on the event loop: a table sweep's scan of a million keys held a
daemon's loop for 100–300 ms per 50,000 rows, and every stream group waited. Here the rows
come as one CSV, read by :func:`~syncengine.sources.postgres.copyout.copy_out` (a C call per
row), and are parsed and converted in a thread by vectorized Arrow casts that give the values
``rows_to_table`` gives: the same select list (text forms where the driver's value would not
fit the Arrow type), the same restoring of text-read columns. Only for column types with such
a cast (:func:`vectorized`); the others keep the cursor's path.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql

from syncengine.codecs import pg_carried, pg_temporal
from syncengine.sources.postgres.chunks import csv_to_text_columns, read_copy
from syncengine.targets.base import TableSpec
from syncengine.targets.postgres.read import is_date_or_timestamp, scan_connection, scan_query


def vectorized(fields: list[pa.Field], target_columns: dict[str, str]) -> bool:
    """Every field's Postgres text converts to what ``rows_to_table`` makes of the driver's
    value by one Arrow cast."""
    return all(_converter(f, target_columns[f.name]) is not None for f in fields)


async def scan_copy(
    dsn: str, schema: str, spec: TableSpec, target_columns: dict[str, str], chunk: int
) -> AsyncIterator[pa.Table]:
    """Every row, in key order (a keyless table: any order), in tables of ``chunk`` rows (at
    least one, maybe empty); the columns must be :func:`vectorized`."""
    fields = [f for f in spec.schema if f.name in target_columns]
    select = scan_query(schema, spec, fields, target_columns)
    async with await scan_connection(dsn) as conn:
        data = await read_copy(conn, sql.SQL("COPY ({}) TO STDOUT (FORMAT csv)").format(select))
    names = tuple(f.name for f in fields)
    text = await asyncio.to_thread(csv_to_text_columns, data, names)
    del data
    for offset in range(0, max(text.num_rows, 1), chunk):
        part = text.slice(offset, chunk)
        yield await asyncio.to_thread(_typed, part, fields, target_columns)


def _typed(text: pa.Table, fields: list[pa.Field], target_columns: dict[str, str]) -> pa.Table:
    arrays, out = [], []
    for f in fields:
        values = text.column(f.name).combine_chunks()
        convert = _converter(f, target_columns[f.name])
        assert convert is not None  # checked by vectorized()
        f, values = convert(values, f)
        arrays.append(values)
        out.append(f)
    return pa.Table.from_arrays(arrays, schema=pa.schema(out))


#: a column's text values → its field (a restored column says so in its metadata) and values
Convert = Callable[[pa.Array, pa.Field], tuple[pa.Field, pa.Array]]


def _converter(field: pa.Field, pg_type: str) -> Convert | None:
    """How a column's text becomes its Arrow values, or None when no cast matches the
    driver's reading."""
    t = field.type
    carrier = pg_carried.held_natively(field, pg_type)
    if carrier is not None:
        return lambda values, f: pg_carried.restore(values, f, carrier)
    if is_date_or_timestamp(t):
        return lambda values, f: (f, pg_temporal.from_text(values, f.type, strict=False))
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return lambda values, f: (f, values.cast(f.type))
    if pa.types.is_integer(t) and not pg_type.endswith("]"):
        return lambda values, f: (f, values.cast(f.type))
    if pa.types.is_boolean(t) and pg_type == "boolean":
        return lambda values, f: (f, pc.equal(values, "t"))
    return None
