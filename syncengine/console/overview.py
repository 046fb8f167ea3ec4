"""What the Pipelines and Tables pages show, gathered from what the engine knows today.

Two probes feed the in-memory :class:`~syncengine.console.history.History` (the live cards):
under the daemon (:class:`DaemonProbe`) the daemon's health and its Prometheus registry (no
connection); alone (:class:`StoreProbe`) the same gathering as ``syncengine status``.
Everything else is read from the state store at page time: the lag history the daemon
records (the chart, :func:`lag_document`), counts, stored totals and last error, snapshot
chunks, checkpoints, and who holds the pipeline's lock.

:func:`table_views` is the one place that decides what a table's row says; it reads snapshot
chunk progress today and is where per-table status (pause, per-table lag) joins once the state
store keeps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from syncengine.config.secrets import redact
from syncengine.console.history import (
    Chart,
    History,
    Sample,
    chart,
    chart_samples,
    stored_throughput,
)
from syncengine.runtime.tablestatus import table_status

if TYPE_CHECKING:
    from syncengine.config.models import Config, PipelineConfig
    from syncengine.runtime.daemon import Daemon
    from syncengine.state import StateStore

log = logging.getLogger("syncengine.console")

#: the daemon's words for a supervisor's state, as the console shows them
STATE_WORDS = {"backfilling": "snapshotting", "streaming": "running"}


class Probe(Protocol):
    interval: float
    applied_label: str
    """What :attr:`Sample.applied` counts, as the page says it."""

    async def sample(self, name: str) -> Sample: ...

    def health(self, name: str) -> tuple[str, str | None] | None:
        """(state, last error) when this process runs the pipeline, else None."""
        ...

    def applied_by_table(self, name: str) -> dict[str, float]: ...


class DaemonProbe:
    """Reads the daemon this console runs in: its supervisors' health and its metrics."""

    interval = 5.0
    # the stored running total grows only when a supervisor run ends; the counters are live
    applied_label = "applied since the daemon started"

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def _value(self, metric: str, name: str) -> float | None:
        registry = self.daemon.metrics.registry
        return registry.get_sample_value(metric, {"pipeline": name})

    async def sample(self, name: str) -> Sample:
        applied = sum(self.applied_by_table(name).values())
        return Sample(
            time.time(),
            lag_seconds=self._value("syncengine_source_lag_seconds", name),
            lag_bytes=self._value("syncengine_source_lag_bytes", name),
            retained_wal_bytes=self._value("syncengine_slot_retained_wal_bytes", name),
            applied=applied,
        )

    def health(self, name: str) -> tuple[str, str | None] | None:
        health = self.daemon.health.get(name)
        if health is None:
            return None
        return STATE_WORDS.get(health.state, health.state), health.last_error

    def applied_by_table(self, name: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for metric in self.daemon.metrics.registry.collect():
            for s in metric.samples:
                if s.name == "syncengine_changes_applied_total" and s.labels["pipeline"] == name:
                    table = s.labels["table"]
                    out[table] = out.get(table, 0.0) + s.value
        return out


class StoreProbe:
    """Without a daemon: connect like ``syncengine status`` (every 15 s)."""

    interval = 15.0
    applied_label = "applied in total (as stored)"

    def __init__(self, config: Config, state: StateStore) -> None:
        self.config = config
        self.state = state

    async def sample(self, name: str) -> Sample:
        from syncengine.runtime.status import gather_status

        info = await gather_status(self.config, name, self.state)
        return Sample(
            time.time(),
            lag_seconds=info.get("lag_seconds"),
            lag_bytes=info.get("lag_bytes"),
            retained_wal_bytes=info.get("retained_wal_bytes"),
            applied=float(info.get("rows_applied") or 0),
        )

    def health(self, name: str) -> tuple[str, str | None] | None:
        return None

    def applied_by_table(self, name: str) -> dict[str, float]:
        return {}


async def sample_forever(
    probe: Probe, state: StateStore, names: list[str], history: History
) -> None:
    """The console's sampler task: one sample per pipeline every ``probe.interval``."""
    while True:
        for name in names:
            try:
                sample = await probe.sample(name)
                chunks: dict[str, int] = {}
                for chunk in state.get_chunks(name):
                    chunks[chunk.table] = chunks.get(chunk.table, 0) + (chunk.status == "done")
                history.add(name, _with_chunks(sample, chunks))
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - a sample is informational
                log.debug("console sample of %s failed", name, exc_info=True)
        await asyncio.sleep(probe.interval)


def _with_chunks(sample: Sample, chunks: dict[str, int]) -> Sample:
    return Sample(
        sample.at,
        sample.lag_seconds,
        sample.lag_bytes,
        sample.retained_wal_bytes,
        sample.applied,
        chunks or None,
    )


@dataclass(frozen=True)
class PipelineView:
    name: str
    source: str
    target: str
    state: str
    last_error: str | None
    lag_seconds: float | None
    lag_bytes: float | None
    retained_wal_bytes: float | None
    retained_threshold_bytes: float | None
    throughput: float | None
    applied: float | None
    applied_label: str
    pending_conflicts: int
    dead_letters: int
    chunks_done: int
    chunks_total: int

    @property
    def retained_over(self) -> bool:
        return (
            self.retained_wal_bytes is not None
            and self.retained_threshold_bytes is not None
            and self.retained_wal_bytes > self.retained_threshold_bytes
        )


def lock_holder(state: StateStore, name: str) -> dict[str, Any] | None:
    """Who holds the pipeline's lock, read without taking it."""
    holder = state.lock(name, "console").peek()
    return None if holder is None else asdict(holder)


def pipeline_state(
    probe: Probe, state: StateStore, name: str, stored: dict[str, Any], pending_chunks: bool
) -> tuple[str, str | None]:
    """(state, last error): the daemon's word when it runs here, else what the lock file and
    the stored status say."""
    here = probe.health(name)
    if here is not None:
        return here
    last_error = stored.get("last_error")
    holder = lock_holder(state, name)
    if holder is not None:
        word = "snapshotting" if pending_chunks else "running"
        return f"{word} ({holder['purpose']}, pid {holder['pid']})", last_error
    return ("failed" if last_error else "stopped"), last_error


def pipeline_view(
    probe: Probe,
    history: History,
    state: StateStore,
    name: str,
    spec: PipelineConfig,
    fresh: float = 30.0,
) -> PipelineView:
    """``fresh``: how recent the daemon's newest stored sample must be for the throughput to
    come from it (else from the console's own samples)."""
    now = time.time()
    recent = state.lag_samples(name, now - fresh)
    throughput = stored_throughput(recent, now, fresh)
    stored = state.get_status(name)
    counts = state.counts(name)
    chunks = state.get_chunks(name)
    done = sum(c.status == "done" for c in chunks)
    word, error = pipeline_state(probe, state, name, stored, done < len(chunks))
    latest = history.latest(name) or Sample(now)
    threshold_mb = getattr(spec.source, "max_retained_wal_mb", None)
    return PipelineView(
        name=name,
        source=spec.source.type,
        target=spec.target.type,
        state=word,
        last_error=redact(error) if error else None,
        lag_seconds=latest.lag_seconds,
        lag_bytes=latest.lag_bytes,
        retained_wal_bytes=latest.retained_wal_bytes,
        retained_threshold_bytes=threshold_mb * 1024 * 1024 if threshold_mb else None,
        throughput=throughput if throughput is not None else history.throughput(name),
        applied=latest.applied,
        applied_label=probe.applied_label,
        pending_conflicts=counts.get("pending_conflicts", 0),
        dead_letters=counts.get("dead_letters", 0),
        chunks_done=done,
        chunks_total=len(chunks),
    )


def lag_document(
    state: StateStore,
    history: History,
    name: str,
    window: float,
    captions: Callable[[str, Chart], str],
    now: float | None = None,
    tables: bool = False,
) -> dict[str, Any]:
    """What the lag chart draws (``/pipelines/NAME/lag.json``): the last ``window`` seconds
    of the daemon's stored samples (then the console's own newer ones) and the charts' points
    computed here; with ``tables``, each source table's stored samples too (up to 50 tables'
    worth, so only when asked: the chart does not need them)."""
    now = time.time() if now is None else now
    rows = state.lag_samples(name, now - window, table=None if tables else "")
    own = [s for s in rows if not s.table]
    samples = chart_samples(own, history.samples(name))
    per_table: dict[str, list[dict[str, Any]]] = {}
    for s in rows:
        if s.table:
            per_table.setdefault(s.table, []).append(
                {"at": s.at, "lag_seconds": s.lag_seconds, "applied": s.applied}
            )
    charts = {
        label: chart(label, samples, field, now, window, floor)
        for label, field, floor in (("seconds", "lag_seconds", 1.0), ("bytes", "lag_bytes", 0.0))
    }
    recorded = {s.at: s.applied for s in own}
    return {
        "pipeline": name,
        "now": now,
        "window": window,
        "samples": [
            {
                "at": s.at,
                "lag_seconds": s.lag_seconds,
                "lag_bytes": s.lag_bytes,
                "retained_wal_bytes": s.retained_wal_bytes,
                # changes applied since the previous stored sample; None: the console's own
                "applied": recorded.get(s.at),
            }
            for s in samples
        ],
        "tables": per_table,
        "charts": {label: c.document(captions(label, c)) for label, c in charts.items()},
    }


@dataclass(frozen=True)
class TableView:
    source: str
    target: str
    state: str
    chunks_done: int
    chunks_total: int
    rows_copied: int
    eta_seconds: float | None
    applied: float | None
    last_change_at: str | None = None
    lag_seconds: float | None = None
    held_changes: int = 0
    dead_letters: int = 0
    pending_conflicts: int = 0


def table_views(
    probe: Probe, history: History, state: StateStore, name: str, spec: PipelineConfig
) -> list[TableView]:
    """One row per mapping: snapshot progress from the chunk table (ETA from the rate the
    console has seen), changes applied from the daemon's counters when it runs here, and the
    per-table status ``status --tables`` shows (state, last change, lag, held changes, dead
    letters, conflicts)."""
    status = {row["table"]: row for row in table_status(name, spec, state)}
    applied = probe.applied_by_table(name)
    chunks = state.get_chunks(name)
    rows = []
    for mapping in spec.mappings_for_sources():
        key = spec.source_key(mapping.source)
        mine = [c for c in chunks if c.table == key]
        done = sum(c.status == "done" for c in mine)
        if not mine:
            word = "no snapshot recorded"
        elif done < len(mine):
            word = "snapshotting"
        else:
            word = "copied"
        rate = history.chunk_rate(name, key)
        eta = (len(mine) - done) / rate if rate and done < len(mine) else None
        hits = [applied[t] for t in (mapping.target_name, key) if t in applied]
        known = status.get(key, {})
        if known.get("state") in ("paused", "resuming"):
            word = str(known["state"])
        rows.append(
            TableView(
                source=key,
                target=mapping.target_name,
                state=word,
                chunks_done=done,
                chunks_total=len(mine),
                rows_copied=sum(c.rows for c in mine),
                eta_seconds=eta,
                applied=hits[0] if hits else known.get("rows_applied"),
                last_change_at=known.get("last_change_at"),
                lag_seconds=known.get("lag_seconds"),
                held_changes=int(known.get("held_changes") or 0),
                dead_letters=int(known.get("dead_letters") or 0),
                pending_conflicts=int(known.get("pending_conflicts") or 0),
            )
        )
    return rows


async def stop_task(task: asyncio.Task[Any] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
