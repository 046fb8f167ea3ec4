"""Reachability checks for targets, with the fix for each problem."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
from pymongo.errors import PyMongoError

from syncengine.config.models import (
    MongoTargetConfig,
    ParquetTargetConfig,
    PipelineConfig,
    PostgresTargetConfig,
)
from syncengine.errors import ConfigError
from syncengine.mongoclient import connect, tls_hint


async def check_target(name: str, pipeline: PipelineConfig) -> list[str]:
    target = pipeline.target
    if isinstance(target, PostgresTargetConfig):
        try:
            conn = await psycopg.AsyncConnection.connect(
                target.dsn.get_secret_value(), autocommit=True, connect_timeout=5
            )
        except psycopg.Error as exc:
            return [f"cannot connect: {(str(exc).strip().splitlines() or ['error'])[0]}"]
        await conn.close()
        return []
    if isinstance(target, MongoTargetConfig):
        try:
            client = connect(target.uri.get_secret_value(), "target", serverSelectionTimeoutMS=5000)
        except ConfigError as exc:
            return [p.removeprefix("target.") for p in exc.problems]
        try:
            await client.admin.command("ping")
            return []
        except PyMongoError as exc:
            reason = str(exc).splitlines()[0].split(" (configured timeouts")[0]
            return [f"cannot connect: {reason}{tls_hint(target.uri.get_secret_value())}"]
        finally:
            await client.close()
    assert isinstance(target, ParquetTargetConfig)
    path = Path(target.path)
    existing = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    if not os.access(existing, os.W_OK):
        return [f"path: '{existing}' is not writable"]
    return []
