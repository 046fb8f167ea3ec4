"""A source connection keeps the DSN's own ``options`` and pins the engine's text forms over
them (a user's ``-c DateStyle=SQL`` would otherwise reach the text readers)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from syncengine.errors import SourceUnavailable
from syncengine.sources.postgres.chunks import plan, table_shape
from syncengine.sources.postgres.connect import connect


@pytest.mark.parametrize("replication", [False, True])
def test_dsn_options_are_kept_and_the_text_forms_pinned(pg_dsn, replication):
    dsn = make_conninfo(pg_dsn, options="-c search_path=sales -c DateStyle=SQL,DMY")

    async def shown() -> dict[str, str]:
        conn = await connect(dsn, query_timeout=None, replication=replication)
        try:
            return {
                name: (await (await conn.execute(f"SHOW {name}")).fetchone())[0]
                for name in ("search_path", "DateStyle", "extra_float_digits", "IntervalStyle")
            }
        finally:
            await conn.close()

    assert asyncio.run(shown()) == {
        "search_path": "sales",
        "DateStyle": "ISO, YMD",
        "extra_float_digits": "3",
        "IntervalStyle": "postgres",
    }


def test_a_cancelled_chunk_plan_is_the_engines_retriable_error(pg_dsn):
    """A server error while planning chunks (here the scan cancelled by a limit; a DBA's
    ``pg_cancel_backend`` alike) is the engine's error, retried, not a traceback."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE keyed (k text PRIMARY KEY)")
        conn.execute("INSERT INTO keyed SELECT md5(i::text) FROM generate_series(1, 50000) i")

    async def planned() -> None:
        conn = await psycopg.AsyncConnection.connect(pg_dsn, autocommit=True)
        try:
            shape = await table_shape(conn, "public.keyed", ("k",))
            await conn.execute("SET statement_timeout = 1")
            await plan(conn, shape, 1000, None)
        finally:
            await conn.close()

    with pytest.raises(SourceUnavailable, match="planning the snapshot chunks of public.keyed"):
        asyncio.run(planned())
