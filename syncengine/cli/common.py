"""Arguments every command shares: the config path first, ``--pipeline NAME`` to pick one."""

from __future__ import annotations

import click

from syncengine.config import Config, load_config
from syncengine.errors import UsageError
from syncengine.plugins import unknown_name_message

config_argument = click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
pipeline_option = click.option(
    "--pipeline", "-p", metavar="NAME", default=None, help="Only this pipeline."
)


def load_selected(config_path: str, pipeline: str | None) -> tuple[Config, list[str]]:
    """The config and the names of the pipelines the command works on."""
    config = load_config(config_path)
    if pipeline is None:
        return config, list(config.pipelines)
    if pipeline not in config.pipelines:
        raise UsageError(unknown_name_message(pipeline, "pipeline", list(config.pipelines)))
    return config, [pipeline]
