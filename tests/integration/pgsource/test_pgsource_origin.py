"""PostgreSQL 15 sends an Origin message for a transaction applied under a replication origin:
the source marks its rows as the engine's own (ECHO), whatever decode mode."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from syncengine.changes import ECHO
from tests.integration.pgsource.pgsource_helpers import (  # noqa: F401 - fixture
    both_decode_modes,
    drain,
    execute,
    make_source,
)

pytestmark = pytest.mark.usefixtures("both_decode_modes")


def origin_writes(pg_dsn: str, own: list[str], ignore: list[str]) -> list[tuple[bool, list[int]]]:
    """(echo, ids) of the batches a source reads back from a user's insert (1), one under
    ``test_origin_mine`` (2) and one under ``test_origin_other`` (3)."""
    execute(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY, note text)")
    source = make_source(pg_dsn, ["public.t"], own_origins=own, ignore_origins=ignore)

    async def scenario():
        await source.open()
        try:
            _, start = await drain(source, None)  # creates the slot
            execute(pg_dsn, "INSERT INTO t VALUES (1, 'user')")
            with psycopg.connect(pg_dsn, autocommit=True) as conn:
                for name in ("test_origin_mine", "test_origin_other"):
                    if (
                        conn.execute("SELECT pg_replication_origin_oid(%s)", (name,)).fetchone()[0]
                        is None
                    ):
                        conn.execute("SELECT pg_replication_origin_create(%s)", (name,))
                conn.execute("SELECT pg_replication_origin_session_setup('test_origin_mine')")
                conn.execute("INSERT INTO t VALUES (2, 'engine')")
                conn.execute("SELECT pg_replication_origin_session_reset()")
                conn.execute("SELECT pg_replication_origin_session_setup('test_origin_other')")
                conn.execute("INSERT INTO t VALUES (3, 'another replicator')")
                conn.execute("SELECT pg_replication_origin_session_reset()")
            batches, _ = await drain(source, start)
        finally:
            await source.close()
        return [
            (b.meta.get(ECHO, False), b.data.column("id").to_pylist())
            for b in batches
            if b.num_rows
        ]

    return asyncio.run(scenario())


def test_rows_written_under_an_own_origin_are_echoes(pg_dsn):
    assert origin_writes(pg_dsn, ["test_origin_mine"], []) == [
        (False, [1]),
        (True, [2]),
        (False, [3]),
    ]


def test_rows_written_under_an_ignored_origin_are_not_read(pg_dsn):
    """A mesh direction skips the other nodes' writes into its node (they send them
    themselves); checked on the server, whatever decode mode."""
    assert origin_writes(pg_dsn, ["test_origin_mine"], ["test_origin_other"]) == [
        (False, [1]),
        (True, [2]),
    ]
