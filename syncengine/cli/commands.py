"""The ``syncengine`` click group; each subcommand lives in its own module."""

from __future__ import annotations

import click

from syncengine import __version__
from syncengine.cli.cluster import apply, worker
from syncengine.cli.conflicts import conflicts
from syncengine.cli.inspect import checkpoints, deadletters, status
from syncengine.cli.jobs import backfill, run, sync
from syncengine.cli.pause import pause, resume
from syncengine.cli.removal import checkpoints_remove
from syncengine.cli.tables import reload, resnapshot
from syncengine.cli.ui import ui
from syncengine.cli.validate import validate
from syncengine.cli.verify import verify


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="syncengine")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--log-level", default="info", show_default=True)
@click.pass_context
def cli(ctx: click.Context, debug: bool, log_format: str, log_level: str) -> None:
    """Change-data capture and sync between PostgreSQL, MongoDB and Parquet."""
    ctx.ensure_object(dict)
    ctx.obj.update(debug=debug, log_format=log_format, log_level=log_level)


for command in (
    validate,
    backfill,
    sync,
    run,
    status,
    verify,
    checkpoints,
    deadletters,
    ui,
    resnapshot,
    reload,
    worker,
    apply,
):
    cli.add_command(command)
checkpoints.add_command(checkpoints_remove)
cli.add_command(conflicts)
cli.add_command(pause)
cli.add_command(resume)
