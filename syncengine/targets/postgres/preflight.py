"""Checks that a Postgres target can be written, with the fix for each problem (``validate``)."""

from __future__ import annotations

import psycopg

from syncengine.config.models import PipelineConfig
from syncengine.targets.postgres.config import PostgresTargetConfig


async def check_target(name: str, pipeline: PipelineConfig) -> list[str]:
    target = pipeline.target
    assert isinstance(target, PostgresTargetConfig)
    try:
        conn = await psycopg.AsyncConnection.connect(
            target.dsn.get_secret_value(), autocommit=True, connect_timeout=5
        )
    except psycopg.Error as exc:
        return [f"cannot connect: {(str(exc).strip().splitlines() or ['error'])[0]}"]
    try:
        return await _two_way_problems(conn, pipeline) if target.replication_origin else []
    finally:
        await conn.close()


async def _two_way_problems(conn: psycopg.AsyncConnection, pipeline: PipelineConfig) -> list[str]:
    """A side of a two-way pipeline: the replication-origin functions may be called, and
    commit times are kept where ``timestamp`` or ``merge`` compares them."""
    from syncengine.conflicts.versions import by_versions
    from syncengine.targets.postgres.origin import origin_privileges_problem

    problem = await origin_privileges_problem(conn)
    problems = [problem] if problem else []
    settings = [pipeline.conflicts, *(m.conflicts for m in pipeline.mappings if m.conflicts)]
    if any(by_versions(c) for c in settings):
        cur = await conn.execute("SHOW track_commit_timestamp")
        row = await cur.fetchone()
        if not row or row[0] != "on":
            problems.append(
                "two_way timestamp and merge compare commit times, which this server does not "
                "keep: set track_commit_timestamp = on (needs a restart), or (timestamp only) "
                "configure conflicts.timestamp"
            )
    return problems
