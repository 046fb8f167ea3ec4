"""The ``mongo`` source kind: MongoDB change streams and ``_id``-range snapshots.

Registered under the ``syncengine.sources`` entry point ``mongo`` (pyproject.toml).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncengine.sources.mongo.config import MongoSourceConfig

if TYPE_CHECKING:
    from syncengine.config.models import BatchConfig, PipelineConfig
    from syncengine.sources.mongo.source import MongoSource
    from syncengine.state.protocols import SourceState


class MongoSourceFactory:
    name = "mongo"
    config = MongoSourceConfig

    def create(
        self, pipeline: str, config: MongoSourceConfig, state: SourceState, batch: BatchConfig
    ) -> MongoSource:
        from syncengine.sources.mongo.source import MongoSource

        return MongoSource(pipeline, config, state, batch)

    async def preflight(self, pipeline: str, config: PipelineConfig) -> list[str]:
        from syncengine.sources.mongo.preflight import check_source

        return await check_source(pipeline, config)

    async def notes(self, pipeline: str, config: PipelineConfig) -> list[str]:
        return []

    def check_where(self, where: str) -> None:
        """``--where`` of ``resnapshot`` / ``backfill``: one row condition (see the module)."""
        from syncengine.sources.mongo.where import check_where

        check_where(where)


factory = MongoSourceFactory()
