"""The ``postgres`` target kind: set-wise apply, checkpoint and shadow rows in the data transaction.

Registered under the ``syncengine.targets`` entry point ``postgres`` (pyproject.toml).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncengine.targets.postgres.config import PostgresTargetConfig

if TYPE_CHECKING:
    from syncengine.config.models import PipelineConfig
    from syncengine.state.protocols import TargetState
    from syncengine.targets.postgres.target import PostgresTarget


class PostgresTargetFactory:
    name = "postgres"
    config = PostgresTargetConfig
    change_log = False

    def create(
        self, pipeline: str, config: PostgresTargetConfig, state: TargetState
    ) -> PostgresTarget:
        from syncengine.targets.postgres.target import PostgresTarget

        return PostgresTarget(pipeline, config, state)

    async def preflight(self, pipeline: str, config: PipelineConfig) -> list[str]:
        from syncengine.targets.postgres.preflight import check_target

        return await check_target(pipeline, config)

    async def notes(self, pipeline: str, config: PipelineConfig) -> list[str]:
        from syncengine.targets.postgres.preflight import notes_target

        return await notes_target(pipeline, config)


factory = PostgresTargetFactory()
