"""``syncengine run``: every pipeline concurrently, each under its own supervisor.

A supervisor holds the pipeline lock for its whole life, backfills when there is no
checkpoint, then streams. Transient failures (RetriableError, dropped connections) are retried
with jittered backoff from the last checkpoint; failures of the target feed a circuit breaker
so a target that keeps failing is probed, not hammered. A permanent error stops only that
pipeline, visibly (log, ``/healthz``, ``syncengine_pipeline_up``, ``status``).

SIGTERM/SIGINT set the stop event: readers stop, the in-flight group is committed and
acknowledged, and the process exits 0 within ``drain_timeout``. A group the target is
bisecting (refused rows) is rolled back instead of finished (:mod:`syncengine.targets.stopping`)
and a running backfill stops between batches; both resume from the checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from syncengine.config.models import Config
from syncengine.errors import (
    HistoryLost,
    Interrupted,
    LockHeld,
    StateUnavailable,
    SyncEngineError,
    TargetUnavailable,
)
from syncengine.runtime import captured, resync
from syncengine.runtime.classify import is_transient
from syncengine.runtime.laghistory import LagRecorder
from syncengine.runtime.metrics import Metrics, MetricsServer
from syncengine.runtime.pipeline import Pipeline
from syncengine.runtime.reload import Reloads
from syncengine.runtime.retry import CIRCUIT_STATES, Backoff, CircuitBreaker
from syncengine.runtime.runner import ensure_backfilled, stream
from syncengine.runtime.status import record_status
from syncengine.runtime.tableops import TableOps
from syncengine.state.locks import Lock
from syncengine.state.protocols import StateStore

log = logging.getLogger("syncengine.daemon")


@dataclass
class PipelineHealth:
    state: str = "starting"
    last_error: str | None = None
    since: float = field(default_factory=time.time)


class Daemon:
    def __init__(
        self,
        config: Config,
        names: Sequence[str],
        state: StateStore,
        metrics: Metrics | None = None,
        drain_timeout: float = 30.0,
        lag_interval: float = 5.0,
        config_path: str | None = None,
        only: str | None = None,
    ) -> None:
        self.config = config
        self.names = list(names)
        self.state = state
        self.metrics = metrics or Metrics()
        self.stop = asyncio.Event()
        self.drain_timeout = drain_timeout
        self.lag_interval = lag_interval
        self.health: dict[str, PipelineHealth] = {n: PipelineHealth() for n in self.names}
        #: the pipelines streaming now (a reload adds tables to them without a restart)
        self.streaming: dict[str, Pipeline] = {}
        #: where ``reload`` re-reads the config from (None: reload is refused), and the one
        #: pipeline the daemon was started for (``--pipeline``)
        self.config_path = config_path
        self.only = only
        self.reloads = Reloads(self)

    def healthy(self) -> tuple[bool, dict[str, object]]:
        details = {
            name: {"state": h.state, "last_error": h.last_error} for name, h in self.health.items()
        }
        return all(h.state != "failed" for h in self.health.values()), {"pipelines": details}

    async def run(self, metrics_port: int | None = None, metrics_host: str = "127.0.0.1") -> int:
        """Run until stopped; returns the exit code (0, or 1 when any pipeline failed)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self.reloads.request)
        server = None
        if metrics_port is not None:
            server = MetricsServer(self.metrics, self.healthy, metrics_port, metrics_host).start()
            log.info("metrics on http://%s:%d/metrics", metrics_host, server.port)
        try:
            await self.reloads.run(self.names)
        finally:
            loop.remove_signal_handler(signal.SIGHUP)
            if server:
                server.stop()
        failed = [n for n, h in self.health.items() if h.state == "failed"]
        return 1 if failed else 0

    def _request_stop(self, sig: int) -> None:
        if not self.stop.is_set():
            log.info("received %s: finishing the in-flight batch", signal.Signals(sig).name)
            self.stop.set()

    async def supervise(self, name: str, stop: asyncio.Event | None = None) -> None:
        """Run one pipeline until ``stop`` (default: the daemon's) is set, or until its lock
        is lost to another process."""
        outer = stop or self.stop
        stop = asyncio.Event()  # this pipeline's: the daemon's, or its lock lost
        health = self.health.setdefault(name, PipelineHealth())
        lock = self.state.lock(name, "run")
        try:
            lock.acquire()
        except SyncEngineError as exc:
            health.state, health.last_error = "failed", str(exc)
            log.error("%s: %s", name, exc)
            return
        lost: list[str] = []
        guard = asyncio.create_task(self._keep_lock(name, lock, outer, stop, lost))
        backoff = Backoff()
        breaker = CircuitBreaker()
        self.metrics.pipeline_up.labels(name).set(1)
        try:
            while not stop.is_set():
                if not breaker.allow():
                    await _sleep(stop, breaker.wait_time())
                    continue
                pipeline = Pipeline(name, self.config.pipelines[name], self.state, self.metrics)
                lag_task = watcher = None
                #: set on ``stop``, or when a table is replaced at the source (then the
                #: pipeline starts again, which asks for the table's copy)
                restart = asyncio.Event()
                try:
                    await pipeline.open()
                    health.state = "backfilling"
                    start, _ = await ensure_backfilled(pipeline, stop=stop)
                    pipeline.warm_up()
                    health.state, health.last_error = "streaming", None
                    breaker.record_success()
                    backoff.reset()
                    lag_task = asyncio.create_task(self._watch_lag(pipeline))
                    side = TableOps(pipeline).batches(stop)
                    self.streaming[name] = pipeline
                    watcher = asyncio.create_task(captured.watch(pipeline, stop, restart))
                    await stream(pipeline, start, stop=restart, side=side)
                except Interrupted:
                    if not (stop.is_set() or restart.is_set()):
                        raise
                    log.info("%s: stopped mid-group; it is applied again on the next start", name)
                except HistoryLost as exc:
                    try:
                        started = await resync.after_history_lost(pipeline, exc)
                    except Exception as failed:  # noqa: BLE001 - classified below
                        # the target went away while the resync was recorded: its request
                        # is stored (reset phase), so the next round carries it out
                        if not is_transient(failed):
                            raise
                        self._retrying(name, health, failed, breaker)
                        await _sleep(stop, backoff.next_delay())
                        continue
                    if not started:
                        raise
                    self.metrics.history_lost.labels(name).inc()  # copied on the next round
                except Exception as exc:  # noqa: BLE001 - classified below
                    if not is_transient(exc):
                        raise
                    self._retrying(name, health, exc, breaker)
                    await _sleep(stop, backoff.next_delay())
                finally:
                    self.streaming.pop(name, None)
                    for task in (lag_task, watcher):
                        if task:
                            task.cancel()
                    self._record_status(name, pipeline, health)
                    await pipeline.close()
                    self.metrics.circuit_state.labels(name).set(CIRCUIT_STATES[breaker.state])
            if lost:
                raise LockHeld(lost[0])
            health.state = "stopped"
        except SyncEngineError as exc:
            self._failed(name, health, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug: stop this pipeline only, with details
            log.exception("%s: stopped by an unexpected error", name)
            self._failed(name, health, f"{type(exc).__name__}: {exc}")
        finally:
            guard.cancel()
            lock.release()

    async def _keep_lock(
        self,
        name: str,
        lock: Lock,
        outer: asyncio.Event,
        stop: asyncio.Event,
        lost: list[str],
    ) -> None:
        """Set ``stop`` when ``outer`` is set, or when the pipeline's lock is lost and another
        process took it meanwhile (``lost`` says why). A shared state store's lock lives on a
        connection of its own: cut, or its server restarted, the lock is gone while this
        daemon still runs the pipeline; it is taken again at once when nobody else has."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(outer.wait(), LOCK_CHECK_SECONDS)
            if outer.is_set():
                break
            try:
                if not lock.lost():
                    continue
                lock.acquire()
                log.warning("%s: its lock's connection was lost; the lock is taken again", name)
            except LockHeld as exc:
                lost.append(f"its lock was lost and taken by another process: {exc.message}")
                break
            except StateUnavailable as exc:  # the store is away: try again next time
                log.warning("%s: could not check its lock: %s", name, exc)
        stop.set()

    def _record_status(self, name: str, pipeline: Pipeline, health: PipelineHealth) -> None:
        """The running totals, after each run of the pipeline; a shared state store out of
        reach costs them this once (the runs' rows are at the target), not the pipeline."""
        try:
            record_status(self.state, name, pipeline.rows_applied, health.last_error)
        except StateUnavailable as exc:
            log.warning("%s: status not recorded: %s", name, exc)

    def _retrying(
        self, name: str, health: PipelineHealth, exc: BaseException, breaker: CircuitBreaker
    ) -> None:
        health.state, health.last_error = "retrying", f"{type(exc).__name__}: {exc}"
        self.metrics.retries.labels(name).inc()
        if isinstance(exc, TargetUnavailable):  # the target's side of the error table
            breaker.record_failure()
        log.warning("%s: transient failure, will resume from the checkpoint: %s", name, exc)

    def _failed(self, name: str, health: PipelineHealth, message: str) -> None:
        health.state, health.last_error = "failed", message
        self.metrics.pipeline_up.labels(name).set(0)
        record_status(self.state, name, None, message)
        log.error("%s: pipeline stopped: %s", name, message)

    async def _watch_lag(self, pipeline: Pipeline) -> None:
        """The lag gauges every ``lag_interval``, and from the same probes the stored lag
        history (:mod:`syncengine.runtime.laghistory`) every ``console.history_interval``."""
        history = self.config.console
        recorder = LagRecorder(pipeline, self.state, history.history_interval, history.history_keep)
        while True:
            lag = None
            try:
                lag = await pipeline.source.lag(await pipeline.checkpoint())
                if lag.lag_seconds is not None:
                    self.metrics.lag_seconds.labels(pipeline.name).set(lag.lag_seconds)
                if lag.lag_bytes is not None:
                    self.metrics.lag_bytes.labels(pipeline.name).set(lag.lag_bytes)
                if lag.retained_wal_bytes is not None:
                    self.metrics.retained_wal.labels(pipeline.name).set(lag.retained_wal_bytes)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - lag is informational
                log.debug("lag probe failed", exc_info=True)
            try:
                recorder.observe(lag)
            except Exception:  # noqa: BLE001 - so is its history (a busy store: next time)
                log.debug("lag sample not recorded", exc_info=True)
            await asyncio.sleep(min(self.lag_interval, history.history_interval))


#: seconds between two checks that a pipeline's lock is still held
LOCK_CHECK_SECONDS = 5.0


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
