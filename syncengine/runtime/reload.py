"""What a reload changes: the daemon re-reads its config (``SIGHUP``, ``syncengine reload``)
and touches only the pipelines whose config changed.

:func:`plan_reload` is pure (old config, new config → what to stop, start, restart, and which
tables were added or removed), so the daemon (:mod:`syncengine.runtime.daemon`) only carries it
out: a changed pipeline is drained like on SIGTERM and started again with its new config. An
added table gets a snapshot request (:mod:`syncengine.runtime.tableops`), which the pipeline
runs while its other tables stream. When tables (and their mappings) are all that changed and
the source can add them to its running stream (Postgres), the pipeline is not restarted: a
restart stalls every table's stream for a second or more (a new decode process, the
walsender decoding again from the slot's restart point). Otherwise it restarts and the table
is captured when it opens (Postgres: it joins the publication; Mongo: the change-stream
filter lists it). A removed table stops being captured
(Postgres: it leaves the engine's own publication; both: no mapping reads it any more); its
target table and its state (shadow, chunk progress) are left until
``syncengine checkpoints CONFIG remove --pipeline P --table T`` removes them
(:mod:`syncengine.runtime.forget`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Container, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from syncengine.config.models import Config, PipelineConfig
from syncengine.errors import ConfigError, SyncEngineError
from syncengine.runtime import captured
from syncengine.runtime.drain import drain

if TYPE_CHECKING:
    from syncengine.runtime.daemon import Daemon

log = logging.getLogger("syncengine.reload")


@dataclass
class ReloadPlan:
    stop: list[str] = field(default_factory=list)
    start: list[str] = field(default_factory=list)
    restart: list[str] = field(default_factory=list)
    #: changed pipelines that take their added tables while streaming (see :func:`adds_only`)
    live: list[str] = field(default_factory=list)
    #: per restarted pipeline, the source tables (keys) added and removed
    added: dict[str, list[str]] = field(default_factory=dict)
    removed: dict[str, list[str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.stop or self.start or self.restart or self.live)

    def take_live(self, old: Config, new: Config, streaming: Container[str]) -> None:
        """Move the restarts of ``streaming`` pipelines that only add tables to ``live``."""
        self.live = [
            name
            for name in self.restart
            if name in streaming
            and adds_only(old.pipelines[name], new.pipelines[name], self.added.get(name, ()))
        ]
        self.restart = [name for name in self.restart if name not in self.live]

    def describe(self) -> str:
        parts = [
            f"{what} {', '.join(names)}"
            for what, names in (
                ("stopping", self.stop),
                ("starting", self.start),
                ("restarting", self.restart),
                ("changing without a restart", self.live),
            )
            if names
        ]
        for name, tables in self.added.items():
            parts.append(f"{name}: tables added {', '.join(tables)}")
        for name, tables in self.removed.items():
            parts.append(f"{name}: tables removed {', '.join(tables)}")
        return "; ".join(parts) or "nothing changed"


def source_tables(spec: PipelineConfig) -> list[str]:
    return [spec.source_key(t) for t in spec.source.table_names()]


def adds_only(old: PipelineConfig, new: PipelineConfig, added: Sequence[str]) -> bool:
    """Whether ``new`` is ``old`` with ``added`` (source keys) and their mappings added and
    nothing else changed: what a running pipeline can take without a restart
    (:meth:`Pipeline.add_tables <syncengine.runtime.pipeline.Pipeline.add_tables>`). Two-way
    and fan-out pipelines are split into several at start-up: they restart."""
    if not added or new.two_way or new.fanout is not None:
        return False
    wanted = set(added)
    kept = [t for t in source_tables(new) if t not in wanted]
    if sorted(kept) != sorted(source_tables(old)):
        return False
    try:  # every other source setting unchanged (the tables' order may differ)
        if new.source.with_table_names(old.source.table_names()) != old.source:
            return False
    except NotImplementedError:
        return False
    mappings = [m for m in new.mappings if new.source_key(m.source) not in wanted]
    return new.model_copy(update={"source": old.source, "mappings": mappings}) == old


def plan_reload(
    old: Config, new: Config, running: Sequence[str], only: str | None = None
) -> ReloadPlan:
    """What to do to go from ``old`` to ``new``; ``running``: the pipelines the daemon runs;
    ``only``: the daemon was started with ``--pipeline`` (no other is started)."""
    plan = ReloadPlan()
    wanted = [only] if only is not None else list(new.pipelines)
    for name in running:
        if name not in new.pipelines or name not in wanted:
            plan.stop.append(name)
        elif new.pipelines[name] != old.pipelines.get(name):
            plan.restart.append(name)
            before = source_tables(old.pipelines[name])
            after = source_tables(new.pipelines[name])
            added = [t for t in after if t not in before]
            removed = [t for t in before if t not in after]
            if added:
                plan.added[name] = added
            if removed:
                plan.removed[name] = removed
    plan.start = [n for n in wanted if n in new.pipelines and n not in running]
    return plan


class Reloads:
    """The daemon's pipelines as tasks, each with its own stop event, and the reload loop:
    a ``SIGHUP`` re-reads the config; a bad one is logged with every problem and its YAML path
    and the daemon keeps the config it runs; a good one is carried out (:class:`ReloadPlan`)."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.stops: dict[str, asyncio.Event] = {}
        self.wanted = asyncio.Event()

    def request(self) -> None:
        log.info("received SIGHUP: reloading the config")
        self.wanted.set()

    def _start(self, name: str) -> None:
        stop = self.stops[name] = asyncio.Event()
        self.tasks[name] = asyncio.create_task(self.daemon.supervise(name, stop), name=name)

    async def _stop(self, names: Sequence[str]) -> None:
        """Drain ``names`` as SIGTERM does, within the same deadline (a stop that hangs must
        not hold the reload, nor the SIGTERM that waits behind it)."""
        for name in names:
            self.stops[name].set()
        await drain([self.tasks[name] for name in names], self.daemon.drain_timeout)
        for name in names:
            task = self.tasks.pop(name)
            if task.done() and not task.cancelled():
                task.result()  # (supervise handles its pipeline's errors itself)
            self.stops.pop(name)

    async def run(self, names: Sequence[str]) -> None:
        """Until the daemon's stop event is set and every pipeline has drained, or until no
        pipeline runs any more (each stopped on a permanent error)."""
        for name in names:
            self._start(name)
        stopping = asyncio.ensure_future(self.daemon.stop.wait())
        reload = asyncio.ensure_future(self.wanted.wait())
        try:
            while True:
                for name, task in list(self.tasks.items()):
                    if task.done():  # stopped or failed: its health says which
                        del self.tasks[name]
                        self.stops.pop(name, None)
                if stopping.done():
                    for stop in self.stops.values():
                        stop.set()
                    await drain(list(self.tasks.values()), self.daemon.drain_timeout)
                    return
                if not self.tasks:
                    return
                await asyncio.wait(
                    {stopping, reload, *self.tasks.values()}, return_when=asyncio.FIRST_COMPLETED
                )
                if reload.done() and not stopping.done():
                    self.wanted.clear()
                    await self.reload()
                    reload = asyncio.ensure_future(self.wanted.wait())
        finally:
            stopping.cancel()
            reload.cancel()

    async def reload(self) -> None:
        daemon = self.daemon
        if daemon.config_path is None:
            log.warning("reload ignored: the daemon was not started from a config file")
            return
        from syncengine.config import load_config

        try:
            new = load_config(daemon.config_path)
        except ConfigError as exc:
            log.error(
                "reload refused, still running the previous config; problems:\n%s",
                "\n".join(exc.problems),
            )
            return
        except SyncEngineError as exc:
            log.error("reload refused, still running the previous config: %s", exc)
            return
        running = list(self.stops)
        plan = plan_reload(daemon.config, new, running, daemon.only)
        plan.take_live(daemon.config, new, daemon.streaming)
        log.info("reload: %s", plan.describe())
        if plan.empty:
            daemon.config = new
            return
        await self._stop([*plan.stop, *plan.restart])
        daemon.config = new
        for name, tables in plan.added.items():
            for table in tables:  # carried out once the pipeline captures the table
                request = daemon.state.request_table(name, table, "resnapshot", None)
                await self._note_empty(name, new.pipelines[name], table, request)
            captured.note_added(daemon.state, name, tables)  # its copy is asked for above
        for name in plan.live:
            if not await self._add_live(name, new.pipelines[name], plan.added[name]):
                plan.restart.append(name)
                await self._stop([name])
        for name, tables in plan.removed.items():
            log.info(
                "%s: %s no longer captured; target tables and state kept (syncengine "
                "checkpoints CONFIG remove --pipeline P --table T removes the state)",
                name,
                ", ".join(tables),
            )
        for name in [*plan.restart, *plan.start]:
            daemon.health.pop(name, None)
            self._start(name)

    async def _note_empty(self, name: str, spec: PipelineConfig, table: str, request: int) -> None:
        """Note on an added table's request whether its target tables hold rows before the
        running stream captures it (:func:`tableops.target_empty`): none, and its copy needs
        no sweep. Not known for a pipeline that restarts (it is asked before the copy)."""
        from syncengine.runtime.tableops import target_empty

        pipeline = self.daemon.streaming.get(name)
        if pipeline is None:
            return
        key = spec.source_key(table)
        mappings = [m for m in spec.mappings_for_sources() if spec.source_key(m.source) == key]
        empty = await target_empty(pipeline.target, mappings)
        if empty is not None:
            self.daemon.state.update_table_request(request, "pending", target_empty=empty)

    async def _add_live(self, name: str, spec: PipelineConfig, added: list[str]) -> bool:
        """Add ``added`` to the running pipeline ``name``; False when it has to restart."""
        pipeline = self.daemon.streaming.get(name)
        if pipeline is None:
            return False
        try:
            await pipeline.add_tables(spec, added)
        except Exception as exc:  # noqa: BLE001 - the restart meets the same cause, handled
            log.warning("%s: could not add %s while streaming (%s); restarting it",
                        name, ", ".join(added), exc)  # fmt: skip
            return False
        log.info("%s: now capturing %s without a restart", name, ", ".join(added))
        return True
