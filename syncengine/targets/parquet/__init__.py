"""The Parquet target: the change log as Parquet files (:mod:`.target`).

:mod:`.factory` registers the kind. The target and its log readers are imported on first use,
so loading the factory (every config load does) stays free of Arrow and Polars.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from syncengine.targets.parquet.target import ParquetTarget, read_log, replay_log

__all__ = ["ParquetTarget", "read_log", "replay_log"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from syncengine.targets.parquet import target

        return getattr(target, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
