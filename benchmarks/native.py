"""Postgres's own logical replication as a baseline: ``CREATE SUBSCRIPTION`` between databases.

Source and target are two databases of the suite's one cluster. ``CREATE SUBSCRIPTION`` cannot
create its slot there (it would wait for its own transaction to end), so the slot is created
beforehand with ``pg_create_logical_replication_slot(…, 'pgoutput')`` and the subscription
uses it with ``create_slot = false``. With ``copy_data = true`` the table-sync workers copy
each table (their own temporary slots); with ``false`` the apply worker only streams from the
slot's position. Every subscription is dropped before its database (``DROP DATABASE`` refuses
a database with subscriptions): disabled, detached from its slot, dropped; the source's slots go
with the source database (:meth:`BenchEnv.drop_pg_db`).

Defaults are Postgres's own (``synchronous_commit = off`` for the apply worker, no streaming of
in-progress transactions): what a user gets from a plain ``CREATE SUBSCRIPTION``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from benchmarks.core import BenchmarkError
from benchmarks.measure import Stopwatch

POLL_S = 0.01
MARKER = "bench_marker"
"""A one-column table written after a load: its row on the target means the load is applied."""


def create_publication(dsn: str, name: str, tables: Iterable[str]) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
                sql.Identifier(name), sql.SQL(", ").join(sql.Identifier(t) for t in tables)
            )
        )


def create_slot(dsn: str, slot: str) -> str:
    """A pgoutput slot at the current position; returns its LSN."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT lsn::text FROM pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,)
        ).fetchone()
    return str(row[0])  # type: ignore[index]


def create_marker(*dsns: str) -> None:
    for dsn in dsns:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(sql.Identifier(MARKER))
            )


def write_marker(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("INSERT INTO {} VALUES (1)").format(sql.Identifier(MARKER)))


def subscribe(src: str, tgt: str, name: str, publication: str, slot: str, copy_data: bool) -> None:
    """``CREATE SUBSCRIPTION`` on ``tgt`` over the existing ``slot`` (enabled: starts at once)."""
    with psycopg.connect(tgt, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE SUBSCRIPTION {} CONNECTION {} PUBLICATION {} WITH "
                "(create_slot = false, slot_name = {}, copy_data = {}, enabled = true)"
            ).format(
                sql.Identifier(name),
                sql.Literal(src),
                sql.Identifier(publication),
                sql.Literal(slot),
                sql.Literal(copy_data),
            )
        )


def wait_synced(tgt: str, name: str, tables: int, timeout: float) -> None:
    """Until every table of subscription ``name`` is synchronized (``s``) or ready (``r``)."""
    query = """SELECT count(*) FILTER (WHERE srsubstate IN ('r', 's')), count(*)
        FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid
        WHERE s.subname = %s"""
    deadline = time.monotonic() + timeout
    with psycopg.connect(tgt, autocommit=True) as conn:
        while True:
            done, total = conn.execute(query, (name,)).fetchone()  # type: ignore[misc]
            if total == tables and done == tables:
                return
            if time.monotonic() > deadline:
                raise BenchmarkError(
                    f"native subscription {name}: {done} of {tables} tables synchronized "
                    f"after {timeout:.0f} s"
                )
            time.sleep(POLL_S)


def wait_marker(tgt: str, timeout: float, what: str) -> None:
    """Until the marker row is on ``tgt`` (everything committed before it is applied)."""
    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(MARKER))
    deadline = time.monotonic() + timeout
    with psycopg.connect(tgt, autocommit=True) as conn:
        while not conn.execute(query).fetchone()[0]:  # type: ignore[index]
            if time.monotonic() > deadline:
                raise BenchmarkError(f"{what}: the load was not applied within {timeout:.0f} s")
            time.sleep(POLL_S)


def copy_data_seconds(
    src: str, tgt: str, name: str, publication: str, tables: int, timeout: float
) -> float:
    """Seconds from ``CREATE SUBSCRIPTION … copy_data = true`` until every table is synced."""
    slot = name
    create_slot(src, slot)
    try:
        with Stopwatch() as watch:
            subscribe(src, tgt, name, publication, slot, copy_data=True)
            wait_synced(tgt, name, tables, timeout)
    finally:
        drop_subscriptions(tgt)
        release_slots(src, [slot])
    return watch.seconds


def drain_seconds(
    src: str, tgt: str, name: str, publication: str, slot: str, timeout: float
) -> float:
    """Seconds from ``CREATE SUBSCRIPTION … copy_data = false`` on ``slot`` (created before the
    load) until the marker written after the load is on ``tgt``: the apply worker's drain."""
    try:
        with Stopwatch() as watch:
            subscribe(src, tgt, name, publication, slot, copy_data=False)
            wait_marker(tgt, timeout, f"native apply worker ({name})")
    finally:
        drop_subscriptions(tgt)
        release_slots(src, [slot])
    return watch.seconds


def drop_subscriptions(dsn: str) -> None:
    """Drop every subscription of ``dsn``'s database without touching the publisher."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        names = conn.execute(
            "SELECT subname FROM pg_subscription s JOIN pg_database d ON d.oid = s.subdbid "
            "WHERE d.datname = current_database()"
        ).fetchall()
        for (name,) in names:
            drop_one(conn, name)


def drop_one(conn: psycopg.Connection[Any], name: str) -> None:
    ident = sql.Identifier(name)
    with contextlib.suppress(psycopg.Error):
        conn.execute(sql.SQL("ALTER SUBSCRIPTION {} DISABLE").format(ident))
    conn.execute(sql.SQL("ALTER SUBSCRIPTION {} SET (slot_name = NONE)").format(ident))
    conn.execute(sql.SQL("DROP SUBSCRIPTION {}").format(ident))


def release_slots(dsn: str, slots: Sequence[str]) -> None:
    """Drop ``slots`` once no walsender holds them (a dropped subscription's may linger)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for slot in slots:
            deadline = time.monotonic() + 30
            while True:
                row = conn.execute(
                    "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,)
                ).fetchone()
                if row is None:
                    break
                if row[0] is not None:
                    conn.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                try:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    break
                except psycopg.errors.ObjectInUse:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
