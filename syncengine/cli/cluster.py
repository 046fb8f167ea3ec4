"""``worker`` and ``apply``: cluster mode on Temporal (docs/cluster.md).

Both need the config's ``cluster:`` section and the ``cluster`` extra; the Temporal SDK is
imported inside the commands (and by ``status`` of a config with that section only), so no
other command loads it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import traceback
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import click

from syncengine.cli.boundary import expected_errors, report_error
from syncengine.cli.common import config_argument, load_selected, pipeline_option
from syncengine.cli.jobs import setup_logs
from syncengine.errors import SyncEngineError, UsageError

if TYPE_CHECKING:
    from syncengine.config import Config
    from syncengine.config.cluster import ClusterConfig


def cluster_of(config: Config, config_path: str) -> ClusterConfig:
    from syncengine.cluster import require_temporal

    if config.cluster is None:
        raise UsageError(
            f"{config_path} has no cluster: section",
            hint="add cluster: {engine: temporal, address: HOST:PORT} (docs/cluster.md)",
        )
    require_temporal()
    return config.cluster


def run_and_leave(main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``main``, report an expected error like every command, then end the process
    without interpreter finalization. The Temporal SDK's core threads (Rust) can still call
    into Python while the interpreter finalizes: with temporalio 1.35 on CPython 3.11 about
    one exit in three died of SIGSEGV or SIGABRT *after* all work was done (a plain
    ``Client.connect`` + one call reproduces it), which turned a successful ``apply`` into a
    failed one. It is the SDK's open issue temporalio/sdk-python#300 (PyGILState_Release
    while finalizing); other projects end their Temporal commands the same way. Everything
    is flushed first; nothing else runs at exit."""
    code = 0
    try:
        asyncio.run(main())
    except SyncEngineError as exc:
        code = report_error(exc)
    except Exception:  # noqa: BLE001 - a bug: its traceback, like any command's
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _request_added(config: Config, names: list[str]) -> None:
    """Tables added since the last ``apply`` get a copy request (a shared state store only:
    a worker cannot read this machine's state file)."""
    from syncengine.cluster.added import request_added
    from syncengine.state import is_shared, open_state

    if not is_shared(config.state):
        return
    for line in request_added(config, open_state(config.state), names):
        click.echo(line)


@click.command()
@config_argument
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=4,
    show_default=True,
    help="Activities (chunks) this worker runs at once.",
)
@expected_errors
def worker(config_path: str, concurrency: int) -> None:
    """Cluster mode: run a stateless worker until SIGTERM/SIGINT (start as many as you like)."""
    setup_logs()
    config, _ = load_selected(config_path, None)
    cluster = cluster_of(config, config_path)
    from syncengine.cluster.service import run_worker
    from syncengine.config import load_config
    from syncengine.state import open_state

    state = open_state(config.state)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_worker(
            config, cluster, state, concurrency, stop, lambda: load_config(config_path)
        )

    run_and_leave(main)


@click.command()
@config_argument
@pipeline_option
@click.option(
    "--backfill",
    is_flag=True,
    help="Start the one-shot chunked backfill workflows instead of the streams.",
)
@click.option("--wait", is_flag=True, help="With --backfill: wait for the backfills to end.")
@expected_errors
def apply(config_path: str, pipeline: str | None, backfill: bool, wait: bool) -> None:
    """Cluster mode: reconcile the pipelines into stream workflows: start new ones, update
    changed ones, stop those no longer configured (only without --pipeline). With
    --backfill: start each pipeline's backfill workflow (a running or completed one is left
    alone)."""
    from syncengine.config.twoway import REVERSE_SUFFIX, direction_of

    setup_logs()
    if wait and not backfill:
        raise UsageError("--wait goes with --backfill (a stream does not end)")
    config, names = load_selected(config_path, pipeline)
    cluster = cluster_of(config, config_path)
    two_way = sorted({n.removesuffix(REVERSE_SUFFIX) for n in names if direction_of(config, n)})
    if two_way:
        raise UsageError(
            f"two-way pipelines do not run in cluster mode yet: {', '.join(two_way)}",
            hint="run them with syncengine run, or pick others with --pipeline",
        )
    from syncengine.cluster.reconcile import apply_streams
    from syncengine.cluster.service import apply_backfills
    from syncengine.cluster.service import wait as results

    async def main() -> None:
        if not backfill:
            _request_added(config, names)
            stop_others = pipeline is None
            for applied in await apply_streams(config, cluster, names, stop_others=stop_others):
                click.echo(f"{applied.pipeline}: stream {applied.outcome} ({applied.workflow_id})")
            return
        for applied in await apply_backfills(config, cluster, names):
            click.echo(f"{applied.pipeline}: backfill {applied.outcome} ({applied.workflow_id})")
        if wait:
            for result in await results(cluster, names):
                again = f", {len(result.skipped)} found committed" if result.skipped else ""
                click.echo(
                    f"{result.pipeline}: backfilled {result.rows} row(s) in {result.chunks} "
                    f"chunk(s){again}"
                )

    run_and_leave(main)
