"""The rows some keys of a source table hold *now*, read by key on an ordinary connection.

A two-way direction whose source wins every conflict (``prefer``) applies these instead of
the images its stream carried (:mod:`syncengine.runtime.restate` says why). The reading is
the Postgres target's own (same select list, same Arrow conversion), so a row comes back
typed as the stream decodes it.
"""

from __future__ import annotations

import psycopg
import pyarrow as pa

from syncengine.names import QualifiedName
from syncengine.targets.base import TableSpec
from syncengine.targets.postgres.ddl import existing_columns
from syncengine.targets.postgres.read import read_rows


async def current_rows(
    conn: psycopg.AsyncConnection,
    table: str,
    key: tuple[str, ...],
    schema: pa.Schema,
    keys: pa.Table,
) -> pa.Table:
    """The columns of ``schema`` (those the table still has) of the rows with ``keys``;
    a key with no row is absent from the answer."""
    name = QualifiedName.parse(table)
    columns = await existing_columns(conn, name.schema, name.name) or {}
    fields = [f for f in schema if f.name in columns]
    spec = TableSpec(name.name, key, pa.schema(fields))
    return await read_rows(conn, name.schema, spec, keys, columns)
