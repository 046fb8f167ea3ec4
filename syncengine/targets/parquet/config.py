"""The ``parquet`` target's config model (``target: {type: parquet, path: …}``)."""

from __future__ import annotations

from typing import Literal

from syncengine.config.base import TargetConfigBase


class ParquetTargetConfig(TargetConfigBase):
    type: Literal["parquet"]
    path: str
    """Folder of the change log (one subfolder per table)."""
