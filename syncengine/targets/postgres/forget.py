"""Removing one source table's state from the target's ``_syncengine`` schema
(``syncengine checkpoints CONFIG remove``): the shadow / fence rows, the record of how the
shadow is kept and a two-way direction's recorded versions, per target table its mapping wrote,
and the snapshot chunk marks of the source table. One transaction; the target tables themselves
are left as they are."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg import sql

from syncengine.state.base import table_chunks
from syncengine.targets.postgres import versions
from syncengine.targets.postgres.ddl import state_table
from syncengine.targets.postgres.rebuild import kept_name


async def forget_table(
    conn: psycopg.AsyncConnection, pipeline: str, table: str, targets: Sequence[str]
) -> dict[str, int]:
    """Delete the state (in the caller's transaction); how many rows went, per kind."""
    cur = await conn.execute(
        sql.SQL("DELETE FROM {} WHERE pipeline = %s AND target_table = ANY(%s)").format(
            state_table("shadow")
        ),
        (pipeline, list(targets)),
    )
    gone = {"target shadow": cur.rowcount}
    await conn.execute(
        sql.SQL("DELETE FROM {} WHERE name = ANY(%s)").format(state_table("meta")),
        ([kept_name(pipeline, t) for t in targets],),
    )
    cur = await conn.execute(
        sql.SQL("DELETE FROM {} WHERE pipeline = ANY(%s) AND source_table = %s").format(
            state_table("chunks")
        ),
        ([pipeline, table_chunks(pipeline)], table),
    )
    gone["target chunks"] = cur.rowcount
    gone["target versions"] = await versions.forget(conn, pipeline, list(targets))
    return gone
