"""Removing the state of a table a pipeline no longer reads (``syncengine checkpoints CONFIG
remove``): what the target keeps for it (:meth:`forget_table` of a target that keeps state, e.g.
``_syncengine`` in Postgres) first, then the state store (one transaction). Both are idempotent,
so a crash in between is repaired by running the command again.

The table must be gone from the config that *runs*: the command checks the config file, and a
running daemon checks the config it holds in memory (it may not have been reloaded since the
file changed). That is why, with a daemon running, the removal is a table request the daemon
carries out between two stream groups (:class:`Forget`, a side step of its applier): nothing of
the pipeline applies meanwhile, and no later group can write state for a table its mapping does
not read.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from syncengine.errors import UsageError

if TYPE_CHECKING:
    from syncengine.config.models import PipelineConfig
    from syncengine.runtime.pipeline import Pipeline
    from syncengine.state.base import TableRequest

log = logging.getLogger("syncengine.forget")

#: the table request kind of a removal handed to the daemon; its ``where`` holds the JSON list
#: of target tables
FORGET = "forget"


def target_tables(spec: PipelineConfig, table: str, given: Sequence[str]) -> list[str]:
    """The target tables whose shadow rows go: ``given`` (``--target-table``), else the name the
    table's implicit mapping writes (a removed table has no mapping left in the config)."""
    if given:
        return list(given)
    return [spec.target.default_table(spec.source.bare_name(table))]


def check_removable(name: str, spec: PipelineConfig, table: str, targets: Sequence[str]) -> None:
    """Refuse a table the pipeline still reads, and target tables a read table writes too
    (their shadow rows are shared)."""
    if table in [spec.source_key(t) for t in spec.source.table_names()]:
        raise UsageError(
            f"pipeline '{name}' still reads {table}; its state is in use",
            hint="remove it from tables: (or collections:), run syncengine reload if a daemon "
            "runs, then remove its state",
        )
    writers = {m.target_name: spec.source_key(m.source) for m in spec.mappings_for_sources()}
    for target in targets:
        if target in writers:
            raise UsageError(
                f"target table {target} is written by {writers[target]}, which pipeline "
                f"'{name}' still reads; its shadow rows are shared and stay",
                hint="name the removed table's own target table with --target-table",
            )


async def forget(
    pipeline: Pipeline, table: str, targets: Sequence[str], keep_request: int | None = None
) -> dict[str, int]:
    """Remove ``table``'s state, target side first; how many rows went, per kind."""
    check_removable(pipeline.name, pipeline.config, table, targets)
    remove = getattr(pipeline.target, "forget_table", None)  # targets keeping no state lack it
    gone: dict[str, int] = dict(await remove(table, targets)) if remove is not None else {}
    gone.update(pipeline.state.forget_table(pipeline.name, table, targets, keep_request))
    log.info("%s: state of removed table %s removed (%s)", pipeline.name, table, describe(gone))
    return gone


def describe(gone: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(gone.items()) if n) or "nothing kept"


class Forget:
    """A removal request as a step of the daemon's applier (between two groups)."""

    def __init__(self, pipeline: Pipeline, request: TableRequest) -> None:
        self.pipeline = pipeline
        self.request = request

    async def __call__(self) -> int:
        """Carry the request out (or refuse it, recorded on the request); rows removed."""
        request, state = self.request, self.pipeline.state
        try:
            targets = json.loads(request.where or "[]")
            gone = await forget(self.pipeline, request.table, targets, request.id)
        except UsageError as exc:
            state.update_table_request(request.id, "failed", str(exc))
            log.error(
                "%s: removing the state of %s refused: %s", self.pipeline.name, request.table, exc
            )
            return 0
        state.update_table_request(request.id, "done")
        return sum(gone.values())
