"""Position strings compare bytewise in a Postgres target whatever the database's collation.

The engine orders positions as byte strings (Python ``<``, SQLite's BINARY, Mongo's default).
A target database whose default collation is a language one (ICU ``en-US`` here; glibc
``en_US.UTF-8`` behaves alike) orders ``a`` before ``B`` and ``:`` before ``0``, so every
SQL comparison of positions says ``COLLATE "C"``. Checked on a database of each collation:
the tombstones purged are exactly those bytewise before the checkpoint.
"""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest
from psycopg import sql

from tests.integration.targets.test_targets_state_conformance import postgres, write

#: positions a source may produce (opaque strings that sort bytewise: mixed case, separators)
POSITIONS = ["0000:1", "00000", "0000A", "0000a", "0000B", "0000b", ":", "A", "a", "Z", "z", "_"]


@pytest.fixture(params=["C", "icu"])
def collated_dsn(request: pytest.FixtureRequest, pg_server) -> str:
    """A fresh database whose default collation is C, or ICU ``en-US``."""
    name = f"coll_{uuid.uuid4().hex[:10]}"
    locale = sql.SQL("LOCALE 'C'")
    if request.param == "icu":
        locale = sql.SQL("LOCALE 'C' LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0 {}").format(sql.Identifier(name), locale)
        )
    yield pg_server.dsn(name)
    with psycopg.connect(pg_server.dsn(), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_the_database_collation_orders_positions_differently(collated_dsn) -> None:
    """The premise: an ICU database sorts these positions unlike bytes (else the test below
    proves nothing)."""
    with psycopg.connect(collated_dsn) as conn:
        provider = conn.execute(
            "SELECT datlocprovider FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]
        found = [
            r[0]
            for r in conn.execute(
                "SELECT p FROM unnest(%s::text[]) p ORDER BY p", (POSITIONS,)
            ).fetchall()
        ]
    assert (found == sorted(POSITIONS)) == (provider == "c")


@pytest.mark.parametrize("checkpoint", ["0000B", "0000a", "A", ":"])
def test_tombstones_purged_bytewise(collated_dsn, checkpoint) -> None:
    async def scenario() -> set[str]:
        async with postgres(collated_dsn) as s:
            async with s.transaction() as tx:
                rows = [(f'{{"id":"{p}"}}', None, p) for p in POSITIONS]
                await s.store.write_shadow(tx, [write("t", rows)], ())
            async with s.transaction() as tx:
                await s.store.purge_tombstones(tx, checkpoint)
            return s.shadow_keys("t")

    kept = asyncio.run(scenario())
    assert kept == {f'{{"id":"{p}"}}' for p in POSITIONS if p >= checkpoint}
