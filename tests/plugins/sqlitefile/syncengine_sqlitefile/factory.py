"""The ``sqlitefile`` kind as the registry sees it. Light on purpose: the target module
(Arrow, Polars) is imported only when a pipeline builds one."""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncengine_sqlitefile.config import SQLiteFileTargetConfig

if TYPE_CHECKING:
    from syncengine.config.models import PipelineConfig
    from syncengine.state.protocols import TargetState
    from syncengine_sqlitefile.target import SQLiteFileTarget


class SQLiteFileTargetFactory:
    name = "sqlitefile"
    config = SQLiteFileTargetConfig
    change_log = False  # a mirror: conflict strategies apply

    def create(
        self, pipeline: str, config: SQLiteFileTargetConfig, state: TargetState
    ) -> SQLiteFileTarget:
        from syncengine_sqlitefile.target import SQLiteFileTarget

        return SQLiteFileTarget(pipeline, config)  # keeps its own state: ``state`` unused

    async def preflight(self, pipeline: str, config: PipelineConfig) -> list[str]:
        from syncengine_sqlitefile.preflight import check_target

        return check_target(config.target)


factory = SQLiteFileTargetFactory()
