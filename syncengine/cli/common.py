"""Arguments every command shares: the config path first, ``--pipeline NAME`` to pick one.

Command modules import only click and light syncengine modules at the top; what a command
needs (the config models, pipelines, drivers, rich) is imported inside it, so ``--help`` and
the light commands do not load Polars, Arrow or the database drivers
(``tests/unit/test_cli_imports.py`` keeps it so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from syncengine.errors import UsageError

if TYPE_CHECKING:
    from syncengine.config import Config

config_argument = click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
pipeline_option = click.option(
    "--pipeline", "-p", metavar="NAME", default=None, help="Only this pipeline."
)


def load_selected(config_path: str, pipeline: str | None) -> tuple[Config, list[str]]:
    """The config and the names of the pipelines the command works on."""
    from syncengine.config import load_config
    from syncengine.plugins import unknown_name_message

    config = load_config(config_path)
    if pipeline is None:
        return config, list(config.pipelines)
    if pipeline not in config.pipelines and pipeline not in config.meshes:
        known = [*config.pipelines, *config.meshes]
        raise UsageError(unknown_name_message(pipeline, "pipeline", known))
    from syncengine.config.twoway import directions_of

    return config, directions_of(config, pipeline)  # two-way: both directions; a mesh: all


def note_worker_local(config: Config, what: str) -> None:
    """In cluster mode with a state *file*, ``what`` (dead letters, parked conflicts) is kept
    in the state file of the worker that met it: say on stderr that this command reads this
    machine's file only, so an empty list is not taken for "none anywhere" (a shared
    ``postgresql://`` state store holds every worker's: nothing to say). stdout (``--json``)
    is unchanged."""
    from syncengine.state import is_shared

    if config.cluster is not None and not is_shared(config.state):
        click.echo(
            f"note: in cluster mode with a state file {what} stay in the state file of the "
            f"worker that met them; this reads {config.state} on this machine only (set "
            f"state: to a postgresql:// URL to share them, docs/cluster.md)",
            err=True,
        )


def selected_tables(config: Config, pipeline: str, tables: tuple[str, ...]) -> list[str] | None:
    """``--table`` values as the pipeline's source names them (either form of
    :mod:`syncengine.names` for Postgres); a table the pipeline does not read is a usage error
    with the closest configured names."""
    from syncengine.plugins import unknown_name_message

    if not tables:
        return None
    spec = config.pipelines[pipeline]
    known = [spec.source_key(t) for t in spec.source.table_names()]
    chosen = []
    for table in tables:
        try:
            key = spec.source_key(table)
        except ValueError as exc:
            raise UsageError(f"--table: {exc}") from None
        if key not in known:
            raise UsageError(
                "--table: " + unknown_name_message(table, f"table of pipeline '{pipeline}'", known)
            )
        chosen.append(key)
    return chosen
