"""Checks that a Postgres source can be captured, with the fix for each problem (``validate``)."""

from __future__ import annotations

import psycopg

from syncengine.config.models import PipelineConfig, PostgresSourceConfig
from syncengine.config.secrets import redact
from syncengine.sources.postgres import admin


async def check_source(name: str, pipeline: PipelineConfig) -> list[str]:
    source = pipeline.source
    assert isinstance(source, PostgresSourceConfig)
    try:
        conn = await psycopg.AsyncConnection.connect(
            source.dsn.get_secret_value(), autocommit=True, connect_timeout=5
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
