"""``pause`` and ``resume``: hold one table's (or a whole pipeline's) changes and release them.

The request goes through the state store (:mod:`syncengine.runtime.pausing`). When no process
holds the pipeline's lock, the command does the work itself: a pause takes effect at once, a
resume applies the held changes in the foreground. When a daemon (or a ``sync``) holds it, the
command leaves the request and waits until that process has carried it out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from syncengine.cli.applier import running_applier
from syncengine.cli.boundary import expected_errors
from syncengine.cli.common import config_argument, load_selected, selected_tables
from syncengine.errors import FatalError, LockHeld

if TYPE_CHECKING:
    from syncengine.config import Config
    from syncengine.state import StateStore

pipeline_required = click.option("--pipeline", "-p", metavar="NAME", required=True)
table_option = click.option(
    "--table", "tables", multiple=True, help="Only this source table (repeatable); default: all."
)
wait_option = click.option(
    "--wait",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds to wait for a running daemon to carry the request out.",
)


@click.command()
@config_argument
@pipeline_required
@table_option
@wait_option
@expected_errors
def pause(config_path: str, pipeline: str, tables: tuple[str, ...], wait: float) -> None:
    """Stop applying a table's changes (held in the state store) while the others flow."""
    from syncengine.state import open_state

    config, _ = load_selected(config_path, pipeline)
    chosen = _tables(config, pipeline, tables)
    state = open_state(config.state)
    if not _paused_here(config, state, pipeline, chosen):
        state.request_pause(pipeline, chosen, "pausing")  # for what applies it to confirm
        await_done(wait, lambda: _confirmed(state, pipeline, chosen), "confirmed the pause")
    click.echo(f"{pipeline}: paused {', '.join(chosen)}")


@click.command()
@config_argument
@pipeline_required
@table_option
@wait_option
@expected_errors
def resume(config_path: str, pipeline: str, tables: tuple[str, ...], wait: float) -> None:
    """Apply what paused tables held, in order, then let them flow again."""
    from syncengine.state import open_state

    config, _ = load_selected(config_path, pipeline)
    chosen = selected_tables(config, pipeline, tables)
    state = open_state(config.state)
    resumed = state.request_resume(pipeline, chosen)
    if not resumed:
        click.echo(f"{pipeline}: nothing is paused")
        return
    try:
        if running_applier(config, state, pipeline) is not None:
            raise LockHeld(f"{pipeline} is applied elsewhere")  # it releases them
        lock = state.lock(pipeline, "resume").acquire()
    except LockHeld:
        await_done(wait, lambda: not set(resumed) & set(state.pauses(pipeline)), "released them")
        click.echo(f"{pipeline}: resumed {', '.join(resumed)}")
        return
    try:
        released = asyncio.run(_release(config, pipeline, resumed, state))
    finally:
        lock.release()
    click.echo(f"{pipeline}: resumed {', '.join(resumed)} ({released} held changes applied)")


def _paused_here(config: Config, state: StateStore, pipeline: str, tables: list[str]) -> bool:
    """Pause ``tables`` at once when nothing applies the pipeline (under its lock); False
    when something does (a daemon, a cluster stream), which must confirm the pause."""
    if running_applier(config, state, pipeline) is not None:
        return False
    try:
        with state.lock(pipeline, "pause"):
            state.request_pause(pipeline, tables, "paused")
    except LockHeld:  # a daemon started meanwhile
        return False
    return True


def _tables(config: Config, pipeline: str, tables: tuple[str, ...]) -> list[str]:
    spec = config.pipelines[pipeline]
    chosen = selected_tables(config, pipeline, tables)
    return chosen if chosen is not None else [spec.source_key(t) for t in spec.source.table_names()]


async def _release(config: Config, name: str, tables: list[str], state: StateStore) -> int:
    """Resume in the foreground: the target only (the source is not read)."""
    from syncengine.runtime import pausing
    from syncengine.runtime.pipeline import Pipeline

    pipeline = Pipeline(name, config.pipelines[name], state)
    try:
        await pipeline.target.open()
        return sum([await pausing.release(pipeline, table) for table in tables])
    finally:
        await pipeline.close()


def _confirmed(state: StateStore, pipeline: str, tables: list[str]) -> bool:
    pauses = state.pauses(pipeline)
    return all(t not in pauses or pauses[t].status != "pausing" for t in tables)


def await_done(seconds: float, done: Callable[[], bool], what: str) -> None:
    """Poll ``done`` until it holds; past ``seconds`` the request stays, and this says so."""
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            raise FatalError(
                f"the process running this pipeline has not {what} within {seconds:.0f} s; "
                "the request stays and is carried out when it next applies",
                hint="see `syncengine status CONFIG --tables`",
            )
        time.sleep(0.2)
