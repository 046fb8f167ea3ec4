"""``syncengine validate CONFIG``: every problem at once, exit 2 on any."""

from __future__ import annotations

import asyncio

import click

from syncengine.cli.boundary import EXIT_USAGE, expected_errors
from syncengine.cli.common import config_argument, load_selected, pipeline_option


@click.command()
@config_argument
@pipeline_option
@click.option(
    "--no-connect", is_flag=True, help="Check the file only; do not contact sources and targets."
)
@expected_errors
def validate(config_path: str, pipeline: str | None, no_connect: bool) -> None:
    """Check the config (and that sources and targets are reachable and usable)."""
    config, names = load_selected(config_path, pipeline)
    if not no_connect:
        from syncengine.config.secrets import redact
        from syncengine.runtime.preflight import check_pipelines, notes

        problems = asyncio.run(check_pipelines(config, names))
        for note in asyncio.run(notes(config, names)) if not problems else ():
            click.echo(f"note: {redact(note)}")
        if problems:
            click.echo(f"config has {len(problems)} problem(s):", err=True)
            for problem in problems:
                click.echo(f"  {redact(problem)}", err=True)
            raise SystemExit(EXIT_USAGE)
    click.echo(f"ok: {len(names)} pipeline(s) valid: {', '.join(names)}")
