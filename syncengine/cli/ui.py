"""``syncengine ui CONFIG [--port N] [--host H]``: the operations console on its own."""

from __future__ import annotations

import asyncio

import click

from syncengine.cli.boundary import expected_errors
from syncengine.cli.common import config_argument, load_selected

ui_host_help = "Address to listen on; anything but loopback needs console.token in the config."


@click.command()
@config_argument
@click.option("--port", type=click.IntRange(0, 65535), default=8780, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help=ui_host_help)
@expected_errors
def ui(config_path: str, port: int, host: str) -> None:
    """The operations console: pipelines, tables, conflicts, dead letters, verify."""
    from syncengine.cli.jobs import setup_logs
    from syncengine.console.server import serve_alone

    setup_logs()
    config, _ = load_selected(config_path, None)
    asyncio.run(serve_alone(config, host, port))
