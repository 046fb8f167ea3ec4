"""Copying a whole pipeline again when the source no longer holds the changes after its
checkpoint (a Postgres slot dropped, invalidated by ``max_slot_wal_keep_size`` or ahead of a
target restored from a backup; a Mongo oplog that rolled over), or after a person reset its
checkpoints (``syncengine checkpoints reset``).

A copy only upserts. The rows deleted at the source during the lost span are in neither the
copy nor the stream, so a copy alone left them at the target for good; and a re-backfill keeps
the older checkpoint (:func:`~syncengine.runtime.runner.backfill`), from which the stream failed
again — the daemon's answer to lost history used to copy every table again, forever. A resync
is the initial backfill again, then a sweep of every table (:mod:`.sweep`: the target rows
whose key the source no longer has are deleted, at a position the sweep's read saw every commit
below), before the stream starts from the copy's position.

The request is kept in the state store, as the checkpoint stream :data:`RESYNC` of the pipeline
(``status`` shows it, with the reason), from before the positions are forgotten until
every table was swept, so a crash anywhere resumes it: in phase ``reset`` the positions are
forgotten again; in phase ``copy`` the backfill resumes at its first chunk not done (or, done,
is not run again) and the sweeps run (again: they are idempotent and fenced per key).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from syncengine.errors import HistoryLost
from syncengine.targets.faults import fault_point

if TYPE_CHECKING:
    from syncengine.config.models import PipelineConfig
    from syncengine.runtime.pipeline import Pipeline
    from syncengine.state.protocols import StateStore

log = logging.getLogger("syncengine.resync")

#: the state store's checkpoint stream holding a pipeline's resync request
RESYNC = "resync"
RESET, COPY = "reset", "copy"


def allowed(pipeline: Pipeline) -> bool:
    """Whether the pipeline answers lost history with a resync (``source.on_history_lost``)."""
    return pipeline.config.source.resnapshot_on_history_lost()


async def after_history_lost(pipeline: Pipeline, lost: HistoryLost) -> bool:
    """Start a resync for ``lost`` if the config allows it (False: it does not, the pipeline
    stops with the error); the next run's :func:`ensure_backfilled` carries it out."""
    if not allowed(pipeline):
        return False
    log.error("%s: SOURCE HISTORY LOST (%s): copying every table again", pipeline.name, lost)
    await begin(pipeline, f"history lost: {lost.message}")
    return True


async def begin(pipeline: Pipeline, reason: str) -> None:
    """Record the request, forget the pipeline's positions (target side first), then mark the
    request's copy phase. The target must be open."""
    checkpoint = await pipeline.checkpoint()
    pipeline.state.put_checkpoint(
        pipeline.name, RESYNC, checkpoint or "", {"phase": RESET, "reason": reason}
    )
    fault_point("resync.before_reset")
    await _forget_positions(pipeline)


def describe(state: StateStore, name: str) -> str | None:
    """The resync under way for pipeline ``name``, as ``status`` and ``checkpoints show``
    print it (``phase: reason``); None when there is none."""
    requested = state.get_checkpoint(name, RESYNC)
    if requested is None:
        return None
    return f"{requested.details.get('phase')}: {requested.details.get('reason')}"


async def resume(pipeline: Pipeline) -> bool:
    """Finish a request's reset that a crash interrupted; whether a resync is under way."""
    stored = pipeline.state.get_checkpoint(pipeline.name, RESYNC)
    if stored is None:
        return False
    if stored.details.get("phase") == RESET:
        await _forget_positions(pipeline)
    return True


def sweeps(config: PipelineConfig) -> bool:
    """Whether a resync of this pipeline sweeps: not a direction of a two-way pipeline or a
    mesh (its target is another direction's source: a row only the target has may be a write
    of that side not yet carried over, not a row the source deleted)."""
    own = getattr(config.source, "own_origins", None)
    return not (config.two_way or own or not config.backfill.copy_rows)


async def sweep(pipeline: Pipeline) -> int:
    """After the copy: delete, table by table, the target rows whose key the source no longer
    has; then the request is done. How many rows went."""
    from syncengine.runtime.sweep import sweep_deleted

    deleted = 0
    if not sweeps(pipeline.config):
        log.warning("%s: a direction of a two-way pipeline or mesh: rows only its target has "
                    "are left (they may be that side's writes); verify shows them",
                    pipeline.name)  # fmt: skip
    for table in pipeline.config.source.table_names() if sweeps(pipeline.config) else []:
        deleted += await sweep_deleted(pipeline, pipeline.config.source_key(table), True)
    pipeline.state.reset_checkpoints(pipeline.name, RESYNC)
    log.info("%s: resync done, %d target rows the source no longer has deleted",
             pipeline.name, deleted)  # fmt: skip
    return deleted


async def _forget_positions(pipeline: Pipeline) -> None:
    """The checkpoint where the target keeps it, then every position and the chunk progress
    in the state store (the request excepted); the request moves to its copy phase."""
    await pipeline.target.reset_checkpoint(pipeline.stream_name)
    state: StateStore = pipeline.state
    state.reset_checkpoints(pipeline.name, keep=(RESYNC,))
    stored = state.get_checkpoint(pipeline.name, RESYNC)
    details = dict(stored.details) if stored else {}
    state.put_checkpoint(pipeline.name, RESYNC, stored.position if stored else "",
                         {**details, "phase": COPY})  # fmt: skip
