"""The condition a snapshot reads each table with: its mappings' filters, pushed down.

Every chunk query (and the chunk plan) of a snapshot reads ``WHERE <range> AND <condition>``,
the condition being the OR of the filters of the mappings that read the table, ANDed with
``backfill --where``. A filter is pushed only when it means the same in Postgres as in the
mapping (:func:`syncengine.mappings.pushdown.postgres_where_any`) and the server accepts it for
this table (``EXPLAIN``: unknown columns, a dotted name on a column that is not json, a
comparison of incompatible types); otherwise the snapshot reads every row and the mapping
filters, as it always does. Either way is said in the log.

The stream is not filtered at the server: publication row filters (PG 15) may reference only
replica-identity columns when the publication publishes updates and deletes (otherwise the
*application's* updates fail), see docs/mappings.md.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg
from psycopg import sql

from syncengine.names import QualifiedName
from syncengine.sources.base import RowFilters

log = logging.getLogger("syncengine.sources.postgres")


async def snapshot_conditions(
    conn: psycopg.AsyncConnection, tables: Sequence[str], filters: RowFilters, where: str | None
) -> dict[str, str | None]:
    """Per table, what its snapshot chunks read with (None: every row)."""
    out: dict[str, str | None] = {}
    for table in tables:
        parts = [p for p in (await _pushed(conn, table, filters), where) if p]
        both = " AND ".join(f"({p})" for p in parts)
        out[table] = both if len(parts) > 1 else (parts[0] if parts else None)
    return out


async def _pushed(conn: psycopg.AsyncConnection, table: str, filters: RowFilters) -> str | None:
    wanted = filters(table)
    if not wanted:
        return None
    # only now: the mapping compiler (sqlglot) is not needed by a table without a filter
    from syncengine.mappings.pushdown import NotPushable, postgres_where_any

    try:
        condition = postgres_where_any(wanted)
    except NotPushable as exc:
        log.info(
            "%s: mapping filter not pushed into the snapshot (%s); rows are filtered after reading",
            table,
            exc,
        )
        return None
    probe = sql.SQL("EXPLAIN SELECT 1 FROM {} WHERE {}").format(
        QualifiedName.parse(table).identifier(), sql.SQL(condition)
    )
    try:
        await conn.execute(probe)
    except psycopg.Error as exc:
        reason = exc.diag.message_primary or type(exc).__name__
        log.info(
            "%s: mapping filter not pushed into the snapshot (the server rejects %s: %s); rows "
            "are filtered after reading",
            table,
            condition,
            reason,
        )
        return None
    log.info("%s: snapshot reads only rows where %s", table, condition)
    return condition
