"""The Parquet target: the change log as Parquet files (:mod:`.target`).

:mod:`.factory` registers the kind. The target and its log readers are imported on first use,
so loading the factory (every config load does) stays free of Arrow and Polars.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from syncengine.lazy import lazy_exports

if TYPE_CHECKING:
    from syncengine.targets.parquet.target import ParquetTarget, read_log, replay_log

__all__ = ["ParquetTarget", "read_log", "replay_log"]

__getattr__ = lazy_exports(__name__, dict.fromkeys(__all__, "syncengine.targets.parquet.target"))
