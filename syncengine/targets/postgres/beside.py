"""Two connections of one target writing at the same time: the stream's, and a second one that
copies a table's snapshot beside it (:meth:`PostgresTarget.beside`).

Every write of a table in the shared set takes a transaction-level advisory lock on
(pipeline, table) before the transaction reads anything, on either connection. The writes of
one table are therefore serialized exactly as if one connection had applied them one after
the other: the second transaction's fence probe, data statements and fence rows all run after
the first one committed (READ COMMITTED: each statement sees what committed before it), so a
snapshot row never overwrites a newer change of the stream and a stream change never
overwrites a newer snapshot row. Writes of other tables do not wait for each other.

The other rows both connections may touch: the pipeline's mark (``floor.raise_mark``, one
upsert at the end of a transaction: the other waits for that commit at most) and the epoch
row (``FOR SHARE``: no wait). Shadow rows are per table.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import psycopg

from syncengine.targets.base import TableWrite


async def lock_shared(
    conn: psycopg.AsyncConnection,
    pipeline: str,
    writes: Sequence[TableWrite],
    shared: Collection[str],
) -> None:
    """Inside the apply transaction, before its first read: wait for (and hold until commit)
    the lock of every written table in ``shared``, in name order (no deadlock between two
    transactions that write several)."""
    for table in sorted({w.spec.name for w in writes if w.spec.name in shared}):
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(%s), hashtext(%s))", (pipeline, table)
        )
