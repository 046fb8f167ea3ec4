"""Reachability and readiness checks behind ``validate`` (and run before every job).

Each problem names the pipeline and what to change. Source- and target-specific checks
(wal_level, replica identity, permissions, change-stream support, a writable folder) belong to
each kind: its factory's ``preflight`` (and a source's ``notes``), found through the registry,
so a plugin's kind is checked the same way as a built-in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from syncengine.config.models import Config, PipelineConfig
from syncengine.plugins import source_factory, target_factory

Check = Callable[[str, PipelineConfig], Awaitable[list[str]]]


async def check_pipelines(config: Config, names: Sequence[str], timeout: float = 10.0) -> list[str]:
    problems: list[str] = []
    for name in names:
        pipeline = config.pipelines[name]
        checks: tuple[tuple[str, Check], ...] = (
            ("source", source_factory(pipeline.source.type).preflight),
            ("target", target_factory(pipeline.target.type).preflight),
        )
        if pipeline.fanout is not None:  # one end is the stream (config/fanout.py)
            from syncengine.cluster.fanout.preflight import check_nats
            from syncengine.config.fanout import fanout_role

            reader = fanout_role(name) is None
            checks = (checks[0] if reader else checks[1], ("fanout", check_nats))
        for kind, check in checks:
            try:
                found = await asyncio.wait_for(check(name, pipeline), timeout)
            except TimeoutError:
                found = [f"{kind} did not answer within {timeout:.0f} s"]
            problems.extend(f"pipelines.{name}.{kind}: {p}" for p in found)
    return problems


async def notes(config: Config, names: Sequence[str], timeout: float = 10.0) -> list[str]:
    """What ``validate`` should tell although nothing is wrong (the source kind's ``notes``),
    each with the pipeline's path."""
    found: list[str] = []
    for name in names:
        pipeline = config.pipelines[name]
        try:
            told = await asyncio.wait_for(
                source_factory(pipeline.source.type).notes(name, pipeline), timeout
            )
        except TimeoutError:
            continue
        found.extend(f"pipelines.{name}.source: {note}" for note in told)
        target_notes = getattr(target_factory(pipeline.target.type), "notes", None)
        if target_notes is None:  # optional for a target kind (plugins)
            continue
        with contextlib.suppress(TimeoutError):
            told = await asyncio.wait_for(target_notes(name, pipeline), timeout)
            found.extend(f"pipelines.{name}.{note}" for note in told)
    return found
