"""Applying under a replication origin, so readers can tell the engine's writes from others'.

A two-way pipeline's directions each write under their own origin (``target.replication_origin``,
set by :mod:`syncengine.config.twoway`). Every transaction of a session set up with
``pg_replication_origin_session_setup`` carries the origin, and pgoutput sends it to readers
(an Origin message after Begin) — PostgreSQL 15 sends it for every transaction that has one,
so the other direction's reader drops those transactions (``own_origins``); PostgreSQL 16+
could filter on the server (``origin 'none'``), which this does not need.

``pg_replication_origin_xact_setup(lsn, commit time)`` in the apply transaction records, in
that same transaction, how far the origin got (``pg_replication_origin_status``, crash-safe
like the checkpoint it commits with) and makes the transaction's commit timestamp the latest
source commit time it applies, where ``track_commit_timestamp`` is on. That is one time for
many source transactions: each row's own version goes to :mod:`.versions`.

Privileges: the functions are superuser-only unless granted; README, *Two-way sync*, lists
the ``GRANT EXECUTE`` statements and ``preflight`` (:func:`origin_privileges_problem`) checks
them.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from syncengine.changes import pos_to_lsn
from syncengine.targets.base import Checkpoint, TableWrite

FUNCTIONS = (
    "pg_replication_origin_oid(text)",
    "pg_replication_origin_create(text)",
    "pg_replication_origin_session_setup(text)",
    "pg_replication_origin_xact_setup(pg_lsn, timestamp with time zone)",
)


async def setup_session(conn: psycopg.AsyncConnection, name: str) -> None:
    """Create the origin if missing and bind this session to it (every later transaction on
    ``conn`` carries it). Another live session bound to it (a previous process not yet gone)
    fails with SQLSTATE 55006, which is retried."""
    found = await conn.execute("SELECT pg_catalog.pg_replication_origin_oid(%s)", (name,))
    row = await found.fetchone()
    if row is None or row[0] is None:
        try:
            await conn.execute("SELECT pg_catalog.pg_replication_origin_create(%s)", (name,))
        except psycopg.errors.UniqueViolation:
            pass  # created meanwhile by the other direction's first start
    await conn.execute("SELECT pg_catalog.pg_replication_origin_session_setup(%s)", (name,))


async def mark_transaction(
    conn: psycopg.AsyncConnection, checkpoint: Checkpoint | None, writes: Sequence[TableWrite]
) -> None:
    """Record the group's source position (and its last commit time) as the origin's progress,
    inside the open apply transaction. Without a checkpoint (a two-way correction written
    while refreshing echoes) the highest position written is recorded, and nothing when no row
    is. The rows' own versions are in :mod:`.versions`: this commit time is one for the whole
    transaction. Positions that are not LSNs (a non-Postgres source) record nothing: the
    session's origin still marks the transaction."""
    position = checkpoint.position if checkpoint is not None else _highest_position(writes)
    if position is None:
        return
    try:
        lsn = pos_to_lsn(position)
    except ValueError:
        return
    commit = _last_commit_time(writes)
    await conn.execute(
        "SELECT pg_catalog.pg_replication_origin_xact_setup(%s::pg_lsn, %s)",
        (f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}", commit),
    )


def _highest_position(writes: Sequence[TableWrite]) -> str | None:
    positions = [
        pc.max(w.batch.data.column("_pos")).as_py()
        for w in writes
        if w.batch.num_rows and "_pos" in w.batch.data.column_names
    ]
    found = [p for p in positions if p is not None]
    # a row's position is ``<commit LSN>.<row number>`` (sources/postgres/assembler.py)
    return max(found).split(".")[0] if found else None


def _last_commit_time(writes: Sequence[TableWrite]) -> object:
    """The latest source commit time in the group (``now()`` when no row carries one)."""
    latest = None
    for write in writes:
        data = write.batch.data
        if "_ts" in data.column_names and data.num_rows:
            value = pc.max(data.column("_ts").cast(pa.timestamp("us", tz="UTC"))).as_py()
            if value is not None and (latest is None or value > latest):
                latest = value
    if latest is None:
        import datetime

        latest = datetime.datetime.now(datetime.UTC)
    return latest


async def origin_privileges_problem(conn: psycopg.AsyncConnection) -> str | None:
    """Why this role cannot apply under a replication origin, or None."""
    cur = await conn.execute(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"
    )
    row = await cur.fetchone()
    if row and row[0]:
        return None
    missing = []
    for function in FUNCTIONS:
        cur = await conn.execute(
            "SELECT has_function_privilege(current_user, %s, 'EXECUTE')", (function,)
        )
        allowed = await cur.fetchone()
        if not (allowed and allowed[0]):
            missing.append(function)
    if not missing:
        return None
    grants = "; ".join(f"GRANT EXECUTE ON FUNCTION pg_catalog.{f} TO <role>" for f in missing)
    return (
        "two_way: this role may not apply under a replication origin (the functions are "
        f"superuser-only by default); as a superuser run: {grants}"
    )
