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
        # within the 10 s that ``validate`` gives each check, so a timeout says "cannot connect"
        conn = await deadline.connect(
            source.dsn.get_secret_value(),
            source.query_timeout,
            defaults={"connect_timeout": 5},
            autocommit=True,
        )
    except psycopg.Error as exc:
        return [f"cannot connect: {redact(_first_line(exc))}"]
    async with conn:
        problems = await admin.check(conn, source)
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


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
