"""Reachability and readiness checks behind ``validate`` (and run before every job).

Each problem names the pipeline and what to change. Source- and target-specific checks
(wal_level, replica identity, permissions, change-stream support) are contributed by the source
and target packages through their ``preflight`` functions.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Sequence

from syncengine.config.models import Config

_CHECKS = {
    "postgres": "syncengine.sources.postgres.preflight",
    "mongo": "syncengine.sources.mongo.preflight",
}
_TARGET_CHECKS = {
    "postgres": "syncengine.targets.preflight",
    "mongo": "syncengine.targets.preflight",
    "parquet": "syncengine.targets.preflight",
}


async def check_pipelines(config: Config, names: Sequence[str], timeout: float = 10.0) -> list[str]:
    problems: list[str] = []
    for name in names:
        pipeline = config.pipelines[name]
        for kind, table, part in (
            ("source", _CHECKS, pipeline.source),
            ("target", _TARGET_CHECKS, pipeline.target),
        ):
            module = importlib.import_module(table[part.type])
            check = getattr(module, f"check_{kind}")
            try:
                found = await asyncio.wait_for(check(name, pipeline), timeout)
            except TimeoutError:
                found = [f"{kind} did not answer within {timeout:.0f} s"]
            problems.extend(f"pipelines.{name}.{kind}: {p}" for p in found)
    return problems


async def notes(config: Config, names: Sequence[str], timeout: float = 10.0) -> list[str]:
    """What ``validate`` should tell although nothing is wrong (``notes_source`` of a source
    package, where it has one), each with the pipeline's path."""
    found: list[str] = []
    for name in names:
        pipeline = config.pipelines[name]
        module = importlib.import_module(_CHECKS[pipeline.source.type])
        gather = getattr(module, "notes_source", None)
        if gather is None:
            continue
        try:
            told = await asyncio.wait_for(gather(name, pipeline), timeout)
        except TimeoutError:
            continue
        found.extend(f"pipelines.{name}.source: {note}" for note in told)
    return found
