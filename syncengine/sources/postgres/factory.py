"""The ``postgres`` source kind: logical replication (or cursor polling) of PostgreSQL tables.

Registered under the ``syncengine.sources`` entry point ``postgres`` (pyproject.toml).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncengine.sources.postgres.config import PostgresSourceConfig

if TYPE_CHECKING:
    from syncengine.config.models import BatchConfig, PipelineConfig
    from syncengine.sources.postgres.source import PostgresSource
    from syncengine.state.protocols import SourceState


class PostgresSourceFactory:
    name = "postgres"
    config = PostgresSourceConfig

    def create(
        self,
        pipeline: str,
        config: PostgresSourceConfig,
        state: SourceState,
        batch: BatchConfig,
    ) -> PostgresSource:
        from syncengine.sources.postgres.source import PostgresSource

        return PostgresSource(pipeline, config, state, batch)

    async def preflight(self, pipeline: str, config: PipelineConfig) -> list[str]:
        from syncengine.sources.postgres.preflight import check_source

        return await check_source(pipeline, config)

    async def notes(self, pipeline: str, config: PipelineConfig) -> list[str]:
        from syncengine.sources.postgres.preflight import notes_source

        return await notes_source(pipeline, config)

    def check_where(self, where: str) -> None:
        """``--where`` of ``resnapshot`` / ``backfill``: one row condition (see the module)."""
        from syncengine.sources.postgres.where import check_where

        check_where(where)


factory = PostgresSourceFactory()
