"""The two halves the stream calls (``prepare``, then ``commit`` of what it returned: see
syncengine/runtime/inflight.py), for test pipelines that implement ``process`` alone: all of
their work runs in the commit, in the stream's order."""

from __future__ import annotations

from typing import Any


class ProcessHalves:
    async def process(self, group: Any, position: Any, target: Any = None) -> Any:
        raise NotImplementedError

    async def prepare(self, group: Any, position: Any, **_: Any) -> tuple[Any, Any]:
        return group, position

    async def commit(self, prepared: tuple[Any, Any]) -> Any:
        return await self.process(*prepared)
