"""One attempt at running a pipeline's stream on a cluster worker (no Temporal in here).

Cluster mode runs each pipeline's stream as one long activity (docs/cluster.md); this is what
that activity does, built from the embedded mode's parts rather than copies of them: the
:class:`~syncengine.runtime.pipeline.Pipeline` stages, the initial backfill when the target
has no checkpoint yet (:func:`~syncengine.runtime.runner.ensure_backfilled`, on this one worker,
consistent with the slot it creates) and the stream loop (:func:`~syncengine.runtime.runner.
stream`), whose groups commit rows, shadow and checkpoint in one target transaction and are
acknowledged to the source only after it.

What cluster mode adds is the fencing epoch. Before the attempt reads its checkpoint it claims
the pipeline in the target (``claim_epoch`` of :class:`PostgresTarget` or :class:`MongoTarget`),
and every commit it makes checks that claim in its own transaction: an earlier attempt whose
worker was paused past its heartbeat timeout and wakes up has its next commit refused and
rolled back (:class:`~syncengine.errors.Fenced`), and stops. Only a target that keeps the epoch
with its checkpoint can be fenced, so the stream runs in cluster mode into a Postgres target or
a Mongo target with transactions.

Per-table requests left in the state store (``resnapshot``, ``checkpoints remove``; ``pause``
and ``resume`` act between groups) are carried out beside the stream as the daemon does; they
reach a worker through a shared state store (:mod:`syncengine.cli.applier`).

At most one reader holds a Postgres slot: a second ``START_REPLICATION`` is refused while the
first walsender lives, and is retried (the source's own wait, then the activity's retries).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from syncengine.cluster import snapchunks
from syncengine.config.secrets import redact
from syncengine.errors import Fenced, Interrupted, UsageError
from syncengine.runtime.pipeline import Pipeline
from syncengine.runtime.runner import ensure_backfilled, stream
from syncengine.runtime.tableops import TableOps
from syncengine.targets.base import Checkpoint

if TYPE_CHECKING:
    from syncengine.config.models import PipelineConfig
    from syncengine.state.protocols import StateStore

log = logging.getLogger("syncengine.cluster")


def fingerprint(config: PipelineConfig) -> str:
    """A digest of a pipeline's config as the engine sees it: ``apply`` and a worker that read
    different files, or the same file before and after an edit, get different ones. Secret
    values enter it with their passwords removed (:func:`~syncengine.config.secrets.redact`):
    moving a DSN to another host changes it, a changed password alone does not (each worker
    reads its secrets from its own environment), and no password is hashed into Temporal."""

    def plain(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return redact(value.get_secret_value())
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, set | frozenset):  # in a fixed order: hashing salts set order
            return sorted((plain(v) for v in value), key=repr)
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    dumped = json.dumps(plain(config.model_dump(by_alias=True)), sort_keys=True, default=str)
    return hashlib.sha256(dumped.encode()).hexdigest()[:16]


class StreamAttempt:
    """One attempt's run of one pipeline's stream; ``epoch`` and ``applied`` are read by the
    activity's heartbeats while it runs."""

    def __init__(
        self,
        name: str,
        config: PipelineConfig,
        state: StateStore,
        holder: str,
        start_at: str = "",
    ) -> None:
        self.name = name
        #: where a spread initial snapshot left the stream to start (:mod:`.snapchunks`)
        self.start_at = start_at
        self.config = config
        self.state = state
        #: who claims the epoch: worker identity and attempt (shown by ``status``)
        self.holder = holder
        self.epoch = 0
        self.pipeline: Pipeline | None = None

    async def _start_at_spread(self, pipeline: Pipeline) -> None:
        """The spread snapshot's chunks are all applied: the stream starts where they were
        reconciled from (committed under this attempt's epoch, like every commit), unless the
        slot moved past it since; then the attempt backfills as in embedded mode."""
        if not await snapchunks.unmoved(pipeline.source, self.start_at):
            log.warning(
                "%s: the slot moved past %s, where the spread snapshot began: backfilling on "
                "this worker instead",
                self.name, self.start_at,
            )  # fmt: skip
            return
        await pipeline.target.apply([], Checkpoint(pipeline.stream_name, self.start_at))
        log.info("%s: spread snapshot done, streaming from %s", self.name, self.start_at)

    @property
    def applied(self) -> int:
        return self.pipeline.rows_applied if self.pipeline is not None else 0

    async def run(self, stop: asyncio.Event, slice_seconds: float) -> int:
        """Claim the pipeline, backfill when there is no checkpoint, then stream until
        ``stop`` or for ``slice_seconds`` of streaming; returns changes applied. What was
        read when it stops is applied up to its last commit boundary, as in ``run``."""
        pipeline = self.pipeline = Pipeline(self.name, self.config, self.state)
        timer: asyncio.TimerHandle | None = None
        try:
            claim = getattr(pipeline.target, "claim_epoch", None)
            if claim is None:
                raise UsageError(
                    f"{self.name}: a cluster stream (preview) needs a postgres target or a "
                    "mongo target with transactions, which commit the fencing epoch with "
                    "their checkpoint",
                    hint="run this pipeline with syncengine run",
                )
            await pipeline.target.open()
            self.epoch = await claim(self.holder)
            log.info("%s: fencing epoch %d claimed by %s", self.name, self.epoch, self.holder)
            await pipeline.source.open()
            if self.start_at and await pipeline.checkpoint() is None:
                await self._start_at_spread(pipeline)
            start, _ = await ensure_backfilled(pipeline, stop=stop)
            timer = asyncio.get_running_loop().call_later(slice_seconds, stop.set)
            log.info("%s: streaming from %s (epoch %d)", self.name, start, self.epoch)
            side = TableOps(pipeline).batches(stop)  # resnapshot, checkpoints remove
            return await stream(pipeline, start, stop=stop, side=side)
        except Fenced as exc:
            log.warning("%s", exc)
            raise
        except Interrupted:
            if not stop.is_set():
                raise
            log.info("%s: stopped mid-group; it is applied again by the next attempt", self.name)
            return pipeline.rows_applied
        finally:
            if timer is not None:
                timer.cancel()
            await pipeline.close()
