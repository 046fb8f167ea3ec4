"""Checks that a Parquet target's folder can be written (``validate``)."""

from __future__ import annotations

import os
from pathlib import Path

from syncengine.config.models import PipelineConfig
from syncengine.targets.parquet.config import ParquetTargetConfig


async def check_target(name: str, pipeline: PipelineConfig) -> list[str]:
    target = pipeline.target
    assert isinstance(target, ParquetTargetConfig)
    path = Path(target.path)
    existing = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    if not os.access(existing, os.W_OK):
        return [f"path: '{existing}' is not writable"]
    return []
