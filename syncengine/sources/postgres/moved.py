"""Values a key-changing update did not send, read back from the source by the new key.

The assembler turns an update that changes the key into a delete of the old key and an update
of the new one. Under REPLICA IDENTITY DEFAULT, pgoutput sends an unchanged TOAST value as
"unchanged" and the old image holds only the key, so the stream alone cannot say what the
new key's row holds there, and the target has no row at the new key to keep it from: writing
it as sent would leave a NULL in place of a value that was never sent. So the reader asks the
source for those values (the table's current row at the new key, in the same text form
pgoutput sends). Such rows are rare (a key change *and* a large unchanged value), so one query
per row is fine.

The value read is the newest one, which is never older than the change: a later change to the
column is in the stream after it and sends its value again (a changed TOAST value is always
sent). A row that is gone by then (deleted, or its key changed again) stays unsent; the later
delete or key change in the stream removes it from the target, and its own update row is filled
the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg import sql
from psycopg.types.string import TextLoader

from syncengine.changes import BEFORE_PREFIX, OP_UPDATE, UNSENT_PREFIX, ChangeBatch
from syncengine.names import QualifiedName
from syncengine.sources.postgres.columns import PgType, to_arrow

if TYPE_CHECKING:
    import polars as pl
else:
    from syncengine.deferred import polars as pl

log = logging.getLogger(__name__)


def moved_rows(batch: ChangeBatch) -> list[int]:
    """Rows that are the new key of a key-changing update and left some value unsent."""
    unsent = batch.unsent_columns
    names = batch.data.column_names
    before = [BEFORE_PREFIX + k for k in batch.key]
    if not unsent or not batch.key or not all(b in names for b in before):
        return []
    frame = batch.to_polars()
    moved = pl.any_horizontal(
        pl.col(BEFORE_PREFIX + k).is_not_null() & (pl.col(k) != pl.col(BEFORE_PREFIX + k))
        for k in batch.key
    )
    some_unsent = pl.any_horizontal(pl.col(UNSENT_PREFIX + c).fill_null(False) for c in unsent)
    mask = (pl.col("_op") == OP_UPDATE) & moved & some_unsent
    return frame.with_row_index("__row").filter(mask)["__row"].to_list()


async def fill_moved(
    conn: psycopg.AsyncConnection, batch: ChangeBatch, types: Mapping[str, PgType]
) -> ChangeBatch:
    """``batch`` with the unsent values of its key-moved rows read from the source table."""
    rows = moved_rows(batch)
    if not rows:
        return batch
    unsent = [c for c in batch.unsent_columns if c in types]
    if not unsent:
        return batch  # the relation changed since: nothing this reader can name
    table = QualifiedName.parse(batch.table).identifier()
    query = sql.SQL("SELECT {} FROM {} WHERE {}").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in unsent),
        table,
        sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in batch.key),
    )
    read: dict[int, tuple[str | None, ...]] = {}
    async with conn.cursor() as cur:
        for oid in {types[c].oid for c in unsent}:
            cur.adapters.register_loader(oid, TextLoader)  # the output text, as pgoutput sends
        for row in rows:
            key = [batch.data.column(k)[row].as_py() for k in batch.key]
            await cur.execute(query, key)
            found = await cur.fetchone()
            if found is not None:
                read[row] = found
    data = batch.data
    for i, column in enumerate(unsent):
        texts: list[str | None] = [None] * data.num_rows
        filled = [False] * data.num_rows
        for row, found in read.items():
            if data.column(UNSENT_PREFIX + column)[row].as_py():
                texts[row], filled[row] = found[i], True
        values = to_arrow(pa.array(texts, pa.string()), types[column], column)
        current = data.column(column)
        if values.type != current.type:
            log.warning(
                "%s.%s: a value read back has another form; left unsent", batch.table, column
            )
            continue
        mask = pa.array(filled, pa.bool_())
        index = data.schema.get_field_index(column)
        data = data.set_column(index, data.schema.field(column), pc.if_else(mask, values, current))
        flag = data.schema.get_field_index(UNSENT_PREFIX + column)
        unsent_now = pc.and_(data.column(flag), pc.invert(mask))
        data = data.set_column(flag, data.schema.field(flag), unsent_now)
    if len(read) < len(rows):
        log.info(
            "%s: %d key-changed row(s) gone from the source already; their unsent values stay "
            "unsent",
            batch.table,
            len(rows) - len(read),
        )
    return batch.replace(data)
