"""The replication-origin privileges a two-way side needs: checked with the GRANTs to run, and
enough once granted (a role that is not a superuser applies under an origin)."""

from __future__ import annotations

import asyncio
import uuid

import psycopg
from psycopg import sql

from syncengine.targets.postgres.origin import (
    FUNCTIONS,
    origin_privileges_problem,
    setup_session,
)


def test_a_plain_role_is_told_the_grants_and_works_once_granted(pg_dsn):
    role = f"tw_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    dsn = psycopg.conninfo.make_conninfo(pg_dsn, user=role)

    async def check() -> str | None:
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        try:
            problem = await origin_privileges_problem(conn)
            if problem is None:
                await setup_session(conn, f"{role}_origin")
                cur = await conn.execute("SELECT pg_replication_origin_session_is_setup()")
                assert (await cur.fetchone())[0] is True
            return problem
        finally:
            await conn.close()

    problem = asyncio.run(check())
    assert problem is not None
    assert "GRANT EXECUTE ON FUNCTION pg_catalog.pg_replication_origin_session_setup" in problem
    with psycopg.connect(pg_dsn, autocommit=True) as admin:
        for function in [*FUNCTIONS, "pg_replication_origin_session_is_setup()"]:
            admin.execute(
                sql.SQL("GRANT EXECUTE ON FUNCTION pg_catalog.{} TO {}").format(
                    sql.SQL(function), sql.Identifier(role)
                )
            )
    try:
        assert asyncio.run(check()) is None
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_replication_origin_drop(%s)", (f"{role}_origin",))
            admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
