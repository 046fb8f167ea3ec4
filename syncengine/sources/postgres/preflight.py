"""Checks that a Postgres source can be captured, with the fix for each problem (``validate``)."""

from __future__ import annotations

import psycopg

from syncengine.config.models import PipelineConfig, PostgresSourceConfig
from syncengine.config.secrets import redact
from syncengine.sources.postgres import admin, deadline


async def check_source(name: str, pipeline: PipelineConfig) -> list[str]:
    source = pipeline.source
    assert isinstance(source, PostgresSourceConfig)
    try:
        conn = await _connect(source)
    except psycopg.Error as exc:
        return [f"cannot connect: {redact(_first_line(exc))}"]
    async with conn:
        problems = await admin.check(conn, source)
        if not problems:
            keyless = await admin.keyless_tables(conn, source.tables)
            problems += _keyless_strategies(pipeline, keyless)
        if source.mode == "cdc":
            slot = source.slot or admin.default_name(name)
            row = await (
                await conn.execute(
                    "SELECT database FROM pg_replication_slots WHERE slot_name = %s "
                    "AND database <> current_database()",
                    (slot,),
                )
            ).fetchone()
            if row is not None:
                problems.append(
                    f"slot: '{slot}' already belongs to database {row[0]}; set source.slot "
                    "to another name"
                )
    return problems


async def _connect(source: PostgresSourceConfig) -> psycopg.AsyncConnection:
    # within the 10 s that ``validate`` gives each check, so a timeout says "cannot connect"
    return await deadline.connect(
        source.dsn.get_secret_value(),
        source.query_timeout,
        defaults={"connect_timeout": 5},
        autocommit=True,
    )


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


KEYLESS_NOTE = (
    "tables: '{table}' has no primary key, so it is replicated as a keyless table: inserts "
    "append; an update or delete changes one target row equal to its old row image (NULLs "
    "match NULLs); the target table gets no primary key and no NOT NULL it lacks; a backfill "
    "replaces the target table's rows. Cost: every group holding updates or deletes of it "
    "reads the whole target table once, and conflict strategies do not apply (the source "
    "wins, as with `remote`). Add a primary key if it is updated often."
)


def _keyless_strategies(pipeline: PipelineConfig, keyless: list[str]) -> list[str]:
    """A keyless table has no key to detect conflicts on: only ``remote`` (the source wins)
    describes what happens to it."""
    if pipeline.target.type == "parquet":
        return []  # a change log: no strategy applies
    problems = []
    for table in keyless:
        wanted = pipeline.source_key(table)
        for i, mapping in enumerate(pipeline.mappings_for_sources()):
            if pipeline.source_key(mapping.source) != wanted:
                continue
            strategy = (mapping.conflicts or pipeline.conflicts).strategy
            if strategy != "remote":
                path = f"mappings[{i}]" if i < len(pipeline.mappings) else "conflicts"
                problems.append(
                    f"{path}: '{table}' has no key, so conflict strategy '{strategy}' "
                    "cannot apply to it; set conflicts: {strategy: remote} on its mapping, or "
                    "give the table a primary key"
                )
    return problems


async def notes_source(name: str, pipeline: PipelineConfig) -> list[str]:
    """What ``validate`` tells about tables that work, but differently (keyless tables)."""
    source = pipeline.source
    assert isinstance(source, PostgresSourceConfig)
    try:
        conn = await _connect(source)
    except psycopg.Error:
        return []  # check_source reported it
    async with conn:
        keyless = await admin.keyless_tables(conn, source.tables)
    return [KEYLESS_NOTE.format(table=t) for t in keyless]
