"""``run``, ``backfill`` and ``sync``: the three ways to run pipelines."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

import click

from syncengine.cli.boundary import expected_errors
from syncengine.cli.common import (
    config_argument,
    load_selected,
    pipeline_option,
    selected_tables,
)
from syncengine.errors import Interrupted, UsageError
from syncengine.runtime.status import record_status
from syncengine.state import open_state

log = logging.getLogger("syncengine.cli")


def setup_logs() -> None:
    from syncengine.runtime.logs import setup_logging

    obj = click.get_current_context().find_root().obj or {}
    setup_logging(obj.get("log_format", "text"), obj.get("log_level", "info"))


@click.command()
@config_argument
@pipeline_option
@click.option("--metrics-port", type=int, default=None, help="Serve /metrics and /healthz.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option(
    "--ui-port", type=click.IntRange(0, 65535), default=None, help="Serve the console too."
)
@click.option(
    "--ui-host",
    default="127.0.0.1",
    show_default=True,
    help="Anything but loopback needs console.token in the config.",
)
@expected_errors
def run(
    config_path: str,
    pipeline: str | None,
    metrics_port: int | None,
    metrics_host: str,
    ui_port: int | None,
    ui_host: str,
) -> None:
    """Daemon: backfill where needed, then stream changes until SIGTERM/SIGINT."""
    from syncengine.runtime.daemon import Daemon

    setup_logs()
    config, names = load_selected(config_path, pipeline)
    state = open_state(config.state)
    daemon = Daemon(config, names, state, config_path=config_path, only=pipeline)
    if ui_port is None:
        code = asyncio.run(daemon.run(metrics_port, metrics_host))
    else:
        from syncengine.console.server import run_with_daemon

        code = asyncio.run(run_with_daemon(daemon, ui_host, ui_port, metrics_port, metrics_host))
    sys.exit(code)


@click.command()
@config_argument
@pipeline_option
@click.option("--table", "tables", multiple=True, help="Only this source table (repeatable).")
@click.option("--where", default=None, help="SQL filter pushed into the snapshot queries.")
@click.option(
    "--parallel",
    type=click.IntRange(1, 64),
    default=None,
    help="Chunks copied at once (default: the pipeline's backfill.parallel, 2).",
)
@expected_errors
def backfill(
    config_path: str,
    pipeline: str | None,
    tables: tuple[str, ...],
    where: str | None,
    parallel: int | None,
) -> None:
    """One-shot consistent copy of current state; resumable; exits 0 when complete."""
    from syncengine.cli.progress import BackfillProgress
    from syncengine.runtime.pipeline import Pipeline
    from syncengine.runtime.runner import backfill as run_backfill

    setup_logs()
    config, names = load_selected(config_path, pipeline)
    if len(names) > 1 and (tables or where):
        raise UsageError("--table and --where need --pipeline NAME")
    chosen = selected_tables(config, names[0], tables)
    state = open_state(config.state)
    if chosen and pipeline is not None:
        from syncengine.cli.tables import hand_to_applier
        from syncengine.runtime.wherecheck import check_where

        check_where(config.pipelines[pipeline].source.type, where)
        if hand_to_applier(config, state, pipeline, chosen, where):
            return  # the running daemon re-snapshots them: the same request as resnapshot

    async def one(name: str, stop: asyncio.Event) -> None:
        with state.lock(name, "backfill"):
            job = Pipeline(name, config.pipelines[name], state)
            await job.open()
            try:
                infos = await job.source.tables()
                estimates = {t.name: t.estimated_rows for t in infos}
                with BackfillProgress(estimates) as progress:
                    await run_backfill(job, chosen, where, parallel, progress, stop)
                record_status(state, name, job.rows_applied, None)
            finally:
                await job.close()

    async def main(stop: asyncio.Event) -> None:
        for name in names:
            await one(name, stop)

    interruptible(main)


@click.command()
@config_argument
@pipeline_option
@click.option("--once", is_flag=True, help="Apply everything committed before now, then exit.")
@click.option("--every", default=None, metavar="DURATION", help="Repeat, sleeping between runs.")
@expected_errors
def sync(config_path: str, pipeline: str | None, once: bool, every: str | None) -> None:
    """Scheduled incremental sync: drain changes up to now, checkpoint, exit (or repeat)."""
    from syncengine.config.durations import parse_duration

    setup_logs()
    if once == bool(every):
        raise UsageError("give exactly one of --once or --every DURATION")
    try:
        interval = parse_duration(every) if every else 0.0
    except ValueError as exc:
        raise UsageError(f"--every: {exc}") from None
    config, names = load_selected(config_path, pipeline)
    from syncengine.sources.postgres import decodespawn

    if any(_streams_pgoutput(config.pipelines[name]) for name in names):
        decodespawn.start_early()  # before the imports below: the child starts while they run
    from syncengine.errors import HistoryLost
    from syncengine.runtime import resync
    from syncengine.runtime.pipeline import Pipeline
    from syncengine.runtime.runner import sync_once

    state = open_state(config.state)

    async def one(name: str, stop: asyncio.Event) -> tuple[int, int]:
        with state.lock(name, "sync"):
            resynced = False  # lost history: one resync a run (runtime/resync.py)
            while True:
                job = Pipeline(name, config.pipelines[name], state)
                await job.open()
                try:
                    result = await sync_once(job, stop=stop)
                    record_status(state, name, job.rows_applied, None)
                    return result
                except HistoryLost as exc:
                    if resynced or not await resync.after_history_lost(job, exc):
                        raise
                    resynced = True
                finally:
                    await job.close()

    async def main(stop: asyncio.Event) -> None:
        while True:
            for name in names:
                if _streams_pgoutput(config.pipelines[name]):
                    decodespawn.start_early()  # (none left by the drain before: see there)
                copied, applied = await one(name, stop)
                backfilled = f"{copied} row(s) backfilled, " if copied else ""
                click.echo(f"{name}: {backfilled}{applied} change(s) applied")
            if not interval:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
            if stop.is_set():
                return  # stopped between runs: nothing in flight

    interruptible(main)


def _streams_pgoutput(spec: Any) -> bool:
    """Whether a pipeline drains a Postgres slot (its stream may decode in a child process)."""
    source = spec.source
    return source.type == "postgres" and getattr(source, "mode", None) == "cdc"


def interruptible(job: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    """Run a one-shot job. The first SIGINT/SIGTERM asks it to stop between batches (it then
    raises :class:`Interrupted`, exit 1, nothing half-applied); a second one cancels it."""

    async def guarded() -> None:
        stop = asyncio.Event()
        task = asyncio.ensure_future(job(stop))
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if stop.is_set():
                task.cancel()
            else:
                stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        await task

    # what start-up loaded (modules, config, clients) lives as long as the job: frozen, the
    # collections that the job's garbage triggers do not walk it again each time
    gc.freeze()
    try:
        asyncio.run(guarded())
    except (asyncio.CancelledError, KeyboardInterrupt):
        # KeyboardInterrupt: a signal in the moments the loop's handlers are not installed
        # (asyncio restores Python's default SIGINT handler when a loop that had one closes)
        raise Interrupted(
            "interrupted", hint="progress so far is checkpointed; run again to resume"
        ) from None
    finally:
        gc.unfreeze()  # an in-process caller (tests) gets its collector back as it was
