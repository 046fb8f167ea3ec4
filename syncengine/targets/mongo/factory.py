"""The ``mongo`` target kind: unordered bulk writes, state in the same transaction if it can.

Registered under the ``syncengine.targets`` entry point ``mongo`` (pyproject.toml).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncengine.targets.mongo.config import MongoTargetConfig

if TYPE_CHECKING:
    from syncengine.config.models import PipelineConfig
    from syncengine.state.protocols import TargetState
    from syncengine.targets.mongo.target import MongoTarget


class MongoTargetFactory:
    name = "mongo"
    config = MongoTargetConfig
    change_log = False

    def create(self, pipeline: str, config: MongoTargetConfig, state: TargetState) -> MongoTarget:
        from syncengine.targets.mongo.target import MongoTarget

        return MongoTarget(pipeline, config, state)

    async def preflight(self, pipeline: str, config: PipelineConfig) -> list[str]:
        from syncengine.targets.mongo.preflight import check_target

        return await check_target(pipeline, config)


factory = MongoTargetFactory()
