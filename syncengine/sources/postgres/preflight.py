"""Checks that a Postgres source can be captured, with the fix for each problem."""

from __future__ import annotations

import psycopg

from syncengine.config.models import PipelineConfig, PostgresSourceConfig


async def check_source(name: str, pipeline: PipelineConfig) -> list[str]:
    source = pipeline.source
    assert isinstance(source, PostgresSourceConfig)
    try:
        conn = await psycopg.AsyncConnection.connect(
            source.dsn.get_secret_value(), autocommit=True, connect_timeout=5
        )
    except psycopg.Error as exc:
        return [f"cannot connect: {_first_line(exc)}"]
    problems: list[str] = []
    async with conn:
        if source.mode == "cdc":
            level = await (await conn.execute("SHOW wal_level")).fetchone()
            if level and level[0] != "logical":
                problems.append(
                    f"wal_level is '{level[0]}'; set wal_level = logical in postgresql.conf "
                    "and restart the server"
                )
        for table in source.tables:
            schema, _, rel = table.rpartition(".")
            row = await (
                await conn.execute(
                    "SELECT c.relreplident, EXISTS (SELECT 1 FROM pg_index i WHERE "
                    "i.indrelid = c.oid AND i.indisprimary) FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                    (schema or "public", rel),
                )
            ).fetchone()
            if row is None:
                problems.append(f"tables: '{table}' does not exist")
                continue
            identity, has_pk = row
            if source.mode == "cdc" and not has_pk and identity not in ("f", "i"):
                problems.append(
                    f"tables: '{table}' has no primary key and no REPLICA IDENTITY FULL, so its "
                    f"updates and deletes cannot be keyed; add a primary key or run "
                    f"ALTER TABLE {table} REPLICA IDENTITY FULL"
                )
    return problems


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
