"""The activities a worker runs: plan a backfill, copy one chunk, run a pipeline's stream.

A worker is stateless: it holds its config (read from its own CONFIG file, secrets from its
environment) and, per pipeline, one opened :class:`~.chunkcopy.ChunkCopier` shared by the chunk
activities it runs at once. Every fact that must survive the worker (which chunk is done) is in
the target database, committed with the rows.

A chunk activity heartbeats every third of its heartbeat timeout while it copies; when the
worker dies or stalls, Temporal gives the chunk to another worker after that timeout. Errors
that no retry can fix (:class:`~syncengine.errors.FatalError`: bad config, refused rows) end the
workflow with their message; everything else is retried.

A new pipeline's initial snapshot is planned by one activity and copied by one activity per
chunk on any worker before the stream starts (:mod:`.snapchunks`).

The stream activity runs one :class:`~.streamrun.StreamAttempt` and heartbeats its fencing
epoch and the changes it applied. It re-reads the worker's config file first, so a worker
whose file was edited runs the edited pipeline, and runs only the config ``apply`` applied
(same fingerprint): another one is refused, and the attempt is retried, maybe elsewhere.
Cancelled (its workflow was updated or stopped, Temporal gave up on it, the worker stops), it
stops the stream the way SIGTERM stops ``run``: what was read is applied up to its last commit
boundary, within one heartbeat timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError

from syncengine.cluster import identity, snapchunks
from syncengine.cluster.chunkcopy import ChunkCopier
from syncengine.cluster.streamrun import StreamAttempt, fingerprint
from syncengine.cluster.tasks import (
    ChunkResult,
    ChunkTask,
    SpreadChunk,
    SpreadPlan,
    StreamRequest,
    StreamResult,
)
from syncengine.config.models import Config, PipelineConfig
from syncengine.errors import FatalError, RetriableError, StateUnavailable, SyncEngineError
from syncengine.plugins import unknown_name_message
from syncengine.state import StateStore

log = logging.getLogger("syncengine.cluster")

T = TypeVar("T")


class BackfillActivities:
    def __init__(self, config: Config, state: StateStore, client: Client | None = None) -> None:
        self.config = config
        self.state = state
        #: asks Temporal whether an attempt is still the current one before it claims its chunk
        self.client = client
        self._copiers: dict[str, ChunkCopier] = {}
        self._opening = asyncio.Lock()

    @activity.defn(name="syncengine-plan-backfill")
    async def plan_backfill(self, pipeline: str) -> list[ChunkTask]:
        tasks = await _reported(self._plan(pipeline))
        log.info("%s: backfill planned, %d chunk(s)", pipeline, len(tasks))
        return tasks

    @activity.defn(name="syncengine-copy-chunk")
    async def copy_chunk(self, task: ChunkTask) -> ChunkResult:
        info = activity.info()
        every = (info.heartbeat_timeout.total_seconds() / 3) if info.heartbeat_timeout else 10.0
        result = await _reported(_beating(self._copy(task, info), every))
        how = "already committed" if result.skipped else f"{result.rows} row(s)"
        log.info(
            "%s: chunk %d of %s: %s (attempt %d)",
            task.pipeline, task.chunk, task.table, how, info.attempt,
        )  # fmt: skip
        return result

    async def close(self) -> None:
        copiers, self._copiers = self._copiers, {}
        for copier in copiers.values():
            await copier.close()

    async def _plan(self, pipeline: str) -> list[ChunkTask]:
        return await (await self._copier(pipeline)).plan()

    async def _copy(self, task: ChunkTask, info: activity.Info) -> ChunkResult:
        copier = await self._copier(task.pipeline)
        what = f"{task.pipeline}: chunk {task.chunk} of {task.table}"
        return await copier.copy(task, await claimant(self.client, info, what))

    async def _copier(self, pipeline: str) -> ChunkCopier:
        async with self._opening:
            copier = self._copiers.get(pipeline)
            if copier is None:
                config = self.config.pipelines.get(pipeline)
                if config is None:
                    known = list(self.config.pipelines)
                    raise FatalError(
                        "this worker's config has no "
                        + unknown_name_message(pipeline, "pipeline", known),
                        hint="every worker needs the config apply was given",
                    )
                copier = await ChunkCopier.open(pipeline, config, self.state)
                self._copiers[pipeline] = copier
            return copier


class StreamActivities:
    def __init__(
        self, load: Callable[[], Config], state: StateStore, client: Client | None = None
    ) -> None:
        #: reads the worker's config file again (each stream attempt runs the current one)
        self.load = load
        self.state = state
        #: asks Temporal whether an attempt is still the current one before it claims
        self.client = client

    @activity.defn(name="syncengine-stream")
    async def stream(self, request: StreamRequest) -> StreamResult:
        info = activity.info()
        every = (info.heartbeat_timeout.total_seconds() / 3) if info.heartbeat_timeout else 10.0
        config = await _reported(self._config(request))
        holder = await claimant(self.client, info, request.pipeline)
        at = request.spread.at if request.spread is not None else ""
        attempt = StreamAttempt(request.pipeline, config, self.state, holder, at)
        stop = asyncio.Event()
        work = asyncio.ensure_future(attempt.run(stop, request.slice_seconds))
        try:
            while not work.done():
                self._beat(request.pipeline, holder)
                await asyncio.wait({work}, timeout=every)
                activity.heartbeat({"epoch": attempt.epoch, "applied": attempt.applied})
        except asyncio.CancelledError:
            stop.set()  # drain as SIGTERM does run, then report the cancellation
            await asyncio.wait({work}, timeout=every * 3)
            if not work.done():  # never a reader left behind its activity: roll back, close
                work.cancel()
                await asyncio.wait({work}, timeout=every)
            if work.done() and not work.cancelled() and work.exception() is not None:
                log.info("%s: stream attempt ended by %s", request.pipeline, work.exception())
            log.info("%s: stream stopped (epoch %d)", request.pipeline, attempt.epoch)
            raise
        finally:
            with contextlib.suppress(StateUnavailable):
                self.state.end_applier(request.pipeline, holder)
        applied = await _reported(work)
        log.info(
            "%s: stream slice over, %d change(s) applied (epoch %d)",
            request.pipeline, applied, attempt.epoch,
        )  # fmt: skip
        return StreamResult(request.pipeline, attempt.epoch, applied)

    @activity.defn(name="syncengine-plan-snapshot")
    async def plan_snapshot(self, request: StreamRequest) -> SpreadPlan:
        """A new pipeline's initial snapshot as chunks for any worker (:mod:`.snapchunks`)."""
        config = await _reported(self._config(request))
        return await _reported(snapchunks.plan(request.pipeline, config, self.state))

    @activity.defn(name="syncengine-snapshot-chunk")
    async def snapshot_chunk(self, spread: SpreadChunk) -> ChunkResult:
        """One chunk of a spread initial snapshot, reconciled by watermarks."""
        info = activity.info()
        every = (info.heartbeat_timeout.total_seconds() / 3) if info.heartbeat_timeout else 10.0
        task = spread.task
        config = await _reported(self._config(spread.request))
        what = f"{task.pipeline}: snapshot chunk {task.chunk} of {task.table}"
        holder = await claimant(self.client, info, what)
        copy = snapchunks.copy_chunk(task.pipeline, config, self.state, task, spread.at, holder)
        rows = await _reported(_beating(copy, every))
        log.info(
            "%s: snapshot chunk %d of %s: %d row(s) (attempt %d)",
            task.pipeline, task.chunk, task.table, rows, info.attempt,
        )  # fmt: skip
        return ChunkResult(task.table, task.chunk, rows)

    def _beat(self, pipeline: str, holder: str) -> None:
        """Say in the state store that this attempt applies ``pipeline`` now: with a shared
        store, how ``pause``, ``resume``, ``resnapshot`` and ``checkpoints remove`` on any
        machine know to leave their request to it (:mod:`syncengine.cli.applier`)."""
        try:
            self.state.beat_applier(pipeline, holder, time.time())
        except StateUnavailable as exc:  # the next beat may get through
            log.warning("%s: could not say it applies the pipeline: %s", pipeline, exc)

    async def _config(self, request: StreamRequest) -> PipelineConfig:
        """The pipeline's config from this worker's file, as ``apply`` applied it."""
        try:
            config = self.load().pipelines.get(request.pipeline)
        except FatalError as exc:  # a file being edited: maybe right on the next attempt
            raise RetriableError(f"this worker cannot read its config: {exc}") from None
        if config is None or fingerprint(config) != request.fingerprint:
            differs = "lacks" if config is None else "differs from the applied config in"
            raise RetriableError(
                f"this worker's config {differs} pipeline {request.pipeline}; another "
                "worker will take it",
                hint="give every worker the config apply was given",
            )
        return config


async def claimant(client: Client | None, info: activity.Info, what: str) -> str:
    """Who this attempt claims its fence as (worker identity, attempt, run), once Temporal
    still counts on it. An attempt handed to this worker while it was paused, and given up on
    since, is refused instead: claiming now would only fence the attempt that replaced it,
    and its result is ignored anyway."""
    if not await still_current(client, info):
        log.info("%s: attempt %d was superseded before it began", what, info.attempt)
        raise ApplicationError("superseded before it began", type="Superseded")
    return f"{identity()} attempt {info.attempt} of run {info.workflow_run_id}"


async def still_current(client: Client | None, info: activity.Info) -> bool:
    """Whether Temporal still counts on this attempt (its workflow run's pending activity is
    this attempt): a worker paused with a task in hand gets it after Temporal gave up on it.
    In doubt (no client, Temporal not answering), yes: the fencing epoch, not this check, keeps
    two attempts from committing."""
    if client is None or info.workflow_id is None:
        return True
    try:
        described = await client.get_workflow_handle(info.workflow_id).describe()
    except RPCError:
        return True
    if described.run_id != info.workflow_run_id:
        return False
    return any(
        pending.activity_id == info.activity_id and pending.attempt == info.attempt
        for pending in described.raw_description.pending_activities
    )


async def _beating(work: Awaitable[T], every: float) -> T:
    """``work``'s result, heartbeating every ``every`` seconds until it is there. Cancelled,
    ``work`` is cancelled too and given a heartbeat's time to roll back and close its
    connections (a chunk's temporary slot goes with its connection) before the activity
    reports."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every)
            if done:
                return task.result()
            activity.heartbeat()
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=every)


async def _reported(work: Awaitable[T]) -> T:
    """``work``'s result; a :class:`FatalError` becomes a non-retryable activity failure
    (type ``FatalError``, the workflow's retry policy stops there), any other
    :class:`SyncEngineError` a retryable one with its message."""
    try:
        return await work
    except FatalError as exc:
        raise ApplicationError(str(exc), type="FatalError", non_retryable=True) from None
    except SyncEngineError as exc:
        raise ApplicationError(str(exc), type=type(exc).__name__) from None
