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


async def notes_target(name: str, pipeline: PipelineConfig) -> list[str]:
    """What ``validate`` tells about the target although nothing is wrong: foreign keys
    between the tables the pipeline writes, which a backfill's chunks may meet out of order."""
    target = pipeline.target
    assert isinstance(target, PostgresTargetConfig)
    tables = sorted({m.target_name for m in pipeline.mappings_for_sources()})
    try:
        conn = await psycopg.AsyncConnection.connect(
            target.dsn.get_secret_value(), autocommit=True, connect_timeout=5
        )
    except psycopg.Error:
        return []  # check_target reported it
    async with conn:
        return [
            FOREIGN_KEY_NOTE.format(*found)
            for found in await foreign_keys(conn, target.schema_, tables)
        ]


#: a foreign key between two written tables
FOREIGN_KEY_NOTE = (
    "target: foreign key {0} of {1} references {2}, also written: a backfill copies tables in "
    "chunks committed one by one, several at once, so a row can arrive before the row it "
    "references and be refused; create such keys after the first backfill, as a pg_dump "
    "restore does (ALTER TABLE {1} ADD CONSTRAINT … NOT VALID, then VALIDATE CONSTRAINT). The "
    "stream applies each group's inserts and updates parents first and its deletes children "
    "first, so it needs nothing"
)


async def foreign_keys(
    conn: psycopg.AsyncConnection, schema: str, tables: list[str]
) -> list[tuple[str, str, str]]:
    """(constraint, table, referenced table) of the foreign keys among ``tables`` (target
    names, in ``schema`` unless qualified)."""
    from syncengine.names import QualifiedName
    from syncengine.targets.postgres.fkorder import links

    resolved = {t: (p.schema, p.name) for t in tables for p in [QualifiedName.parse(t, schema)]}
    return await links(conn, resolved, deferred=True)
