"""``resnapshot``: copy one table again while the pipeline's other tables keep streaming;
``reload``: make the running daemon re-read its config.

With a daemon holding the pipeline (found through its lock, :meth:`PipelineLock.holder`), the
request is left in the state store and the daemon carries it out between stream groups
(:mod:`syncengine.runtime.tableops`); without one, it runs here with a progress bar, and a
crash leaves the request ``running`` for the next run (or daemon) to resume per chunk.
"""

from __future__ import annotations

import asyncio

import click

from syncengine.cli.boundary import expected_errors
from syncengine.cli.common import config_argument, load_selected, selected_tables
from syncengine.config.models import Config
from syncengine.errors import FatalError, UsageError
from syncengine.state.protocols import StateStore


def hand_to_applier(
    config: Config, state: StateStore, pipeline: str, tables: list[str], where: str | None
) -> bool:
    """Leave a re-snapshot request per table for what applies the pipeline (a daemon, a
    cluster stream); False when nothing does."""
    from syncengine.cli.applier import running_applier
    from syncengine.runtime.tableops import RESNAPSHOT

    applier = running_applier(config, state, pipeline)
    if applier is None:
        return False
    for table in tables:
        request = state.request_table(pipeline, table, RESNAPSHOT, where)
        click.echo(
            f"{pipeline}: re-snapshot of {table} handed to {applier.describe()} as request "
            f"{request}; it runs while the other tables stream"
        )
    return True


@click.command()
@config_argument
@click.option("--pipeline", "-p", metavar="NAME", required=True, help="The pipeline.")
@click.option("--table", required=True, help="The source table (or collection) to copy again.")
@click.option(
    "--where",
    default=None,
    help="Only rows matching this condition (one predicate; see the README).",
)
@click.option("--parallel", type=click.IntRange(1, 64), default=2, show_default=True)
@expected_errors
def resnapshot(
    config_path: str, pipeline: str, table: str, where: str | None, parallel: int
) -> None:
    """Copy one table again while the pipeline's other tables stream."""
    from syncengine.cli.jobs import interruptible, setup_logs
    from syncengine.runtime.wherecheck import check_where
    from syncengine.state import open_state

    setup_logs()
    config, (name,) = load_selected(config_path, pipeline)
    chosen = selected_tables(config, name, (table,))
    assert chosen is not None
    check_where(config.pipelines[name].source.type, where)
    state = open_state(config.state)
    if hand_to_applier(config, state, name, chosen, where):
        return

    async def foreground(stop: asyncio.Event) -> None:
        from syncengine.cli.progress import BackfillProgress
        from syncengine.runtime.pipeline import Pipeline
        from syncengine.runtime.status import record_status
        from syncengine.runtime.tableops import TableOps

        with state.lock(name, "resnapshot"):
            job = Pipeline(name, config.pipelines[name], state)
            await job.open()
            try:
                if await job.checkpoint() is None:
                    raise UsageError(
                        f"{name} has not been backfilled yet",
                        hint="run syncengine backfill (or run) first",
                    )
                ops = TableOps(job, parallel)
                request = ops.request(chosen[0], where)
                estimates = {t.name: t.estimated_rows for t in await job.source.tables()}
                with BackfillProgress(estimates) as progress:
                    await ops.carry_out(request, progress, stop)
                record_status(state, name, job.rows_applied, None)
            finally:
                await job.close()

    interruptible(foreground)


@click.command()
@config_argument
@expected_errors
def reload(config_path: str) -> None:
    """Make the running daemon re-read CONFIG (like SIGHUP); only changed pipelines restart."""
    import os
    import signal

    from syncengine.state import open_state

    # a bad config is reported here (every problem, YAML paths, exit 2) and nothing is signalled
    config, names = load_selected(config_path, None)
    state = open_state(config.state)
    from syncengine.cli.applier import DAEMON

    if config.cluster is not None:
        raise UsageError(
            "in cluster mode the workers run the config apply gave them",
            hint="after editing the config, run syncengine apply CONFIG (docs/cluster.md)",
        )
    holders = [state.lock(name, "reload").holder() for name in names]
    daemons = {d for d in holders if d is not None and d.purpose == DAEMON}
    for daemon in sorted((d for d in daemons if d.host), key=lambda d: (str(d.host), d.pid)):
        click.echo(  # a pid on another machine cannot be signalled from here
            f"the daemon {daemon.describe()} runs on another machine: run syncengine reload "
            f"there (or send it SIGHUP)",
            err=True,
        )
    pids = sorted({d.pid for d in daemons if d.host is None})
    if not pids:
        raise FatalError(  # exit 1: the command ran and found nothing to signal
            "no daemon on this machine runs any pipeline of this config",
            hint="start one with syncengine run CONFIG (it reads the config when it starts)",
        )
    for pid in pids:
        os.kill(pid, signal.SIGHUP)
        click.echo(f"asked the daemon (pid {pid}) to reload {config_path}")
