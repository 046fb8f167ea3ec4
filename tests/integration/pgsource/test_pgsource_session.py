"""A source connection keeps the DSN's own ``options`` and pins the engine's text forms over
them (a user's ``-c DateStyle=SQL`` would otherwise reach the text readers)."""

from __future__ import annotations

import asyncio

import pytest
from psycopg.conninfo import make_conninfo

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
