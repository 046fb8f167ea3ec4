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
    if source.mode == "cdc" and not problems:
        problems += await _replication_problems(source)
    return problems


async def _replication_problems(source: PostgresSourceConfig) -> list[str]:
    """Whether the stream's own kind of connection (``replication=database``) is let in: the
    role's attribute alone does not say, pg_hba.conf must have a line for it, and a pooler
    in between (PgBouncer) refuses it. Before, ``validate`` passed and the first ``sync``
    stopped at "no pg_hba.conf entry for replication connection" or "unsupported startup
    parameter: replication"."""
    try:
        conn = await deadline.connect(
            source.dsn.get_secret_value(),
            source.query_timeout,
            defaults={"connect_timeout": 5},
            autocommit=True,
            replication="database",
        )
    except psycopg.Error as exc:
        return [
            f"cannot open a replication connection: {redact(_first_line(exc))} (the stream "
            "needs one: a pg_hba.conf line of type 'replication' or a database line that "
            "matches, for this user and host, reached directly: a pooler such as PgBouncer "
            "cannot pass one on)"
        ]
    async with conn:
        await conn.execute("IDENTIFY_SYSTEM")
    return []


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
    from syncengine.plugins import target_factory

    if target_factory(pipeline.target.type).change_log:
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
        carried = await _text_carried_notes(conn, pipeline)
    return [KEYLESS_NOTE.format(table=t) for t in keyless] + carried


TEXT_CARRIED_NOTE = (
    "mappings[{index}]: {where} compute(s) over '{column}' ({pg_type}), which a batch carries "
    "as Postgres text when it holds a value with no Arrow form (time 24:00:00, a "
    "multi-dimensional array, NaN in numeric(p,s), a timestamp past 294247 AD); at run time "
    "the other values are read natively and the rows holding such a value go to dead letters "
    "(on_error: fail stops); a plain field or pass-through copies every value unchanged"
)


async def _text_carried_notes(conn: psycopg.AsyncConnection, pipeline: PipelineConfig) -> list[str]:
    """A note per column a mapping expression reads that a batch may carry as text
    (:mod:`syncengine.mappings.carried`): ``validate`` cannot know the values, only the type."""
    from syncengine.codecs.pg_carried import can_be_text
    from syncengine.mappings.carried import expression_columns
    from syncengine.names import QualifiedName

    notes = []
    for index, mapping in enumerate(pipeline.mappings):
        read = expression_columns(mapping)
        if not read:
            continue
        table = QualifiedName.parse(mapping.source)
        cur = await conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            (table.schema, table.name),
        )
        for column, pg_type in await cur.fetchall():
            if column in read and can_be_text(pg_type):
                where = ", ".join(read[column])
                notes.append(
                    TEXT_CARRIED_NOTE.format(
                        index=index, where=where, column=column, pg_type=pg_type
                    )
                )
    return notes
