"""The ``parquet`` target kind: the change log as Parquet files, state in the SQLite store.

Registered under the ``syncengine.targets`` entry point ``parquet`` (pyproject.toml).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncengine.targets.parquet.config import ParquetTargetConfig

if TYPE_CHECKING:
    from syncengine.config.models import PipelineConfig
    from syncengine.state.protocols import TargetState
    from syncengine.targets.parquet.target import ParquetTarget


class ParquetTargetFactory:
    name = "parquet"
    config = ParquetTargetConfig
    change_log = True

    def create(
        self, pipeline: str, config: ParquetTargetConfig, state: TargetState
    ) -> ParquetTarget:
        from syncengine.targets.parquet.target import ParquetTarget

        return ParquetTarget(pipeline, config, state)

    async def preflight(self, pipeline: str, config: PipelineConfig) -> list[str]:
        from syncengine.targets.parquet.preflight import check_target

        return await check_target(pipeline, config)


factory = ParquetTargetFactory()
