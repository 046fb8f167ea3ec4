"""``checkpoints CONFIG remove --pipeline P --table T``: remove the state a pipeline keeps for
a table it no longer reads (the table was removed from ``tables:`` / ``collections:``).

Without a process holding the pipeline's lock, the command removes it itself, holding the lock.
With a daemon running the pipeline, it leaves a request in the state store and waits for the
daemon to carry it out between two groups: the daemon checks the config it runs (which a
missing ``reload`` leaves older than the file) and refuses a table it still reads
(:mod:`syncengine.runtime.forget`). Another holder (``sync``, ``backfill``) makes it refuse.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import click

from syncengine.cli.boundary import expected_errors
from syncengine.cli.common import config_argument, load_selected
from syncengine.cli.pause import await_done, wait_option
from syncengine.errors import UsageError

if TYPE_CHECKING:
    from syncengine.config import Config
    from syncengine.state import StateStore


@click.command("remove")
@config_argument
@click.option("--pipeline", "-p", required=True, metavar="NAME")
@click.option("--table", required=True, help="The source table (or collection) removed.")
@click.option(
    "--target-table",
    "targets",
    multiple=True,
    help="Target table(s) its mapping wrote (repeatable); default: the source's bare name.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@wait_option
@expected_errors
def checkpoints_remove(
    config_path: str, pipeline: str, table: str, targets: tuple[str, ...], yes: bool, wait: float
) -> None:
    """Remove a removed table's state (counters, requests, pause and held changes, chunk
    progress, dead letters, shadow rows and conflicts); its target table is left as it is."""
    from syncengine.cli.applier import running_applier
    from syncengine.runtime.forget import FORGET, check_removable, target_tables
    from syncengine.state import open_state

    config, _ = load_selected(config_path, pipeline)
    spec = config.pipelines[pipeline]
    try:
        key = spec.source_key(table)
    except ValueError as exc:
        raise UsageError(f"--table: {exc}") from None
    chosen = target_tables(spec, key, targets)
    check_removable(pipeline, spec, key, chosen)
    if not yes:
        click.confirm(
            f"remove the state '{pipeline}' keeps for {key} (shadow of {', '.join(chosen)})?",
            abort=True,
        )
    state = open_state(config.state)
    applier = running_applier(config, state, pipeline)
    if applier is not None:
        request = state.request_table(pipeline, key, FORGET, json.dumps(chosen))
        await_done(wait, lambda: _settled(state, pipeline, request), "carried out the removal")
        (row,) = [r for r in state.table_requests(pipeline, False) if r.id == request]
        if row.status == "failed":
            raise UsageError(f"{applier.describe()} refused: {row.error}")
        state.forget_table(pipeline, key, chosen)  # its own request row (the rest is gone)
        click.echo(f"{pipeline}: state of {key} removed by {applier.describe()}")
        return
    with state.lock(pipeline, "checkpoints remove"):
        gone = asyncio.run(_remove(config, pipeline, state, key, chosen))
    click.echo(f"{pipeline}: state of {key} removed ({gone})")


def _settled(state: StateStore, pipeline: str, request: int) -> bool:
    return all(r.id != request for r in state.table_requests(pipeline))


async def _remove(
    config: Config, name: str, state: StateStore, table: str, targets: list[str]
) -> str:
    from syncengine.runtime.forget import describe, forget
    from syncengine.runtime.pipeline import Pipeline

    job = Pipeline(name, config.pipelines[name], state)
    try:
        await job.target.open()
        return describe(await forget(job, table, targets))
    finally:
        await job.close()
