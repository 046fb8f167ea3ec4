"""``status``, ``checkpoints`` and ``deadletters``: looking at (and resetting) stored state."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import click

from syncengine.cli.boundary import expected_errors
from syncengine.cli.common import (
    config_argument,
    load_selected,
    note_worker_local,
    pipeline_option,
)
from syncengine.errors import UsageError
from syncengine.state import StateStore, open_state

if TYPE_CHECKING:
    from syncengine.config.models import Config


@click.command()
@config_argument
@pipeline_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--tables", "per_table", is_flag=True, help="One row per table (from the state store)."
)
@expected_errors
def status(config_path: str, pipeline: str | None, as_json: bool, per_table: bool) -> None:
    """Positions, lag, retained WAL, pending conflicts, dead letters, last error."""
    from syncengine.cli.statusview import print_status, print_tables
    from syncengine.runtime.status import gather_status

    config, names = load_selected(config_path, pipeline)
    state = open_state(config.state)
    if per_table:
        from syncengine.runtime.tablestatus import table_status

        rows = [r for n in names for r in table_status(n, config.pipelines[n], state)]
        if as_json:
            click.echo(json.dumps(rows, indent=2, default=str))
        else:
            print_tables(rows)
        return
    infos = [asyncio.run(gather_status(config, name, state)) for name in names]

    def show() -> None:
        if as_json:
            click.echo(json.dumps(infos, indent=2, default=str))
        else:
            print_status(infos)

    if config.cluster is None:
        show()
        return
    from syncengine.cli.cluster import cluster_of, run_and_leave

    cluster = cluster_of(config, config_path)

    async def with_workflows() -> None:
        from syncengine.cluster.clusterstatus import stream_states

        states = await stream_states(cluster, names)
        for info in infos:
            info.update(states.get(str(info.get("pipeline")), {}))
        show()

    run_and_leave(with_workflows)  # Temporal's client: the cluster commands' exit


class ConfigFirstGroup(click.Group):
    """Accepts ``GROUP CONFIG SUB …`` (as DESIGN.md writes ``checkpoints CONFIG show``) as well
    as ``GROUP SUB CONFIG …`` (like the other groups)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if len(args) >= 2 and args[0] not in self.commands and args[1] in self.commands:
            args = [args[1], args[0], *args[2:]]
        return super().parse_args(ctx, args)


@click.group(cls=ConfigFirstGroup)
def checkpoints() -> None:
    """Inspect or reset stored source positions (``checkpoints CONFIG show|reset``)."""


@checkpoints.command("show")
@config_argument
@pipeline_option
@click.option("--json", "as_json", is_flag=True)
@expected_errors
def checkpoints_show(config_path: str, pipeline: str | None, as_json: bool) -> None:
    from syncengine.runtime import resync
    from syncengine.runtime.pipeline import Pipeline

    config, names = load_selected(config_path, pipeline)
    state = open_state(config.state)

    async def gather(name: str) -> dict[str, Any]:
        job = Pipeline(name, config.pipelines[name], state)
        try:
            await job.target.open()
            position = await job.checkpoint()
        finally:
            await job.close()
        row: dict[str, Any] = {"pipeline": name, "stream": job.stream_name, "position": position}
        resyncing = resync.describe(state, name)
        if resyncing is not None:  # the positions were forgotten: a resync is under way
            row["resync"] = resyncing
        return row

    rows = [asyncio.run(gather(n)) for n in names]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['pipeline']}\t{row['stream']}\t{row['position'] or '(none)'}")
        if "resync" in row:
            click.echo(f"{row['pipeline']}\tresync under way\t{row['resync']}")


@checkpoints.command("reset")
@config_argument
@click.option("--pipeline", "-p", required=True, metavar="NAME")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@expected_errors
def checkpoints_reset(config_path: str, pipeline: str, yes: bool) -> None:
    """Forget a pipeline's positions: its next run copies every table again, then deletes the
    target rows whose key the source no longer has (a resync)."""
    config, _ = load_selected(config_path, pipeline)
    if not yes:
        click.confirm(f"reset checkpoints of '{pipeline}' (next run re-backfills)?", abort=True)
    state = open_state(config.state)
    with state.lock(pipeline, "checkpoints reset"):
        _forget_positions(config, pipeline, state)
    click.echo(
        f"{pipeline}: checkpoints and snapshot progress reset; the next run copies every table "
        "again and deletes the target rows the source no longer has"
    )


def _forget_positions(config: Config, pipeline: str, state: StateStore) -> None:
    """A resync request: the stored positions forgotten where the target keeps them and in
    the state store (:mod:`syncengine.runtime.resync`)."""
    from syncengine.runtime import resync
    from syncengine.runtime.pipeline import Pipeline

    async def forget() -> None:
        job = Pipeline(pipeline, config.pipelines[pipeline], state)
        try:
            await job.target.open()
            await resync.begin(job, "checkpoints reset")
        finally:
            await job.close()

    asyncio.run(forget())


@click.group()
def deadletters() -> None:
    """Records that could not be mapped or applied."""


@deadletters.command("list")
@config_argument
@pipeline_option
@click.option("--json", "as_json", is_flag=True)
@click.option("--all", "include_replayed", is_flag=True, help="Include replayed ones.")
@expected_errors
def deadletters_list(
    config_path: str, pipeline: str | None, as_json: bool, include_replayed: bool
) -> None:
    config, names = load_selected(config_path, pipeline)
    note_worker_local(config, "dead letters")
    state = open_state(config.state)
    letters = [
        letter for name in names for letter in state.list_dead_letters(name, include_replayed)
    ]
    if as_json:
        click.echo(json.dumps([_letter(x) for x in letters], indent=2))
        return
    for letter in letters:
        click.echo(
            f"{letter.id}\t{letter.pipeline}\t{letter.table}\t{letter.stage}\t{letter.reason}"
        )


def _letter(letter: Any) -> dict[str, Any]:
    return {
        "id": letter.id,
        "pipeline": letter.pipeline,
        "table": letter.table,
        "stage": letter.stage,
        "reason": letter.reason,
        "payload": json.loads(letter.payload),
        "position": letter.position,
        "created_at": letter.created_at,
        "replayed_at": letter.replayed_at,
        "superseded": letter.superseded,
    }


@deadletters.command("show")
@config_argument
@click.argument("letter_id", type=int)
@expected_errors
def deadletters_show(config_path: str, letter_id: int) -> None:
    config, names = load_selected(config_path, None)
    state = open_state(config.state)
    for name in names:
        for letter in state.list_dead_letters(name, include_replayed=True):
            if letter.id == letter_id:
                click.echo(json.dumps(_letter(letter), indent=2))
                return
    raise UsageError(f"no dead letter with id {letter_id}")


@deadletters.command("replay")
@config_argument
@click.option("--pipeline", "-p", required=True, metavar="NAME")
@click.option("--id", "ids", type=int, multiple=True, help="Only these letters (repeatable).")
@click.option(
    "--force",
    is_flag=True,
    help="Replay superseded letters too (a later change of their key would be overwritten).",
)
@expected_errors
def deadletters_replay(config_path: str, pipeline: str, ids: tuple[int, ...], force: bool) -> None:
    """Re-run dead letters through the current mapping (after fixing it). Letters a later
    change of their key superseded are skipped unless --force."""
    from syncengine.runtime.replay import replay_letters, split_superseded

    config, _ = load_selected(config_path, pipeline)
    state = open_state(config.state)
    letters = [
        letter for letter in state.list_dead_letters(pipeline) if not ids or letter.id in ids
    ]
    for letter in split_superseded(letters, force)[1]:
        click.echo(
            f"dead letter {letter.id} ({letter.table}) skipped: superseded by a later "
            f"change of its key at position {letter.superseded}; replaying it would "
            "overwrite that change (--force replays it anyway)"
        )
    spec = config.pipelines[pipeline]
    done, again = asyncio.run(replay_letters(pipeline, spec, state, set(ids) or None, force=force))
    if not done:
        click.echo("no dead letters to replay")
        return
    click.echo(f"{pipeline}: {done} replayed, {again} dead-lettered again")


@checkpoints.command("drop-slot")
@config_argument
@click.option("--pipeline", "-p", required=True, metavar="NAME")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@expected_errors
def checkpoints_drop_slot(config_path: str, pipeline: str, yes: bool) -> None:
    """Drop the pipeline's Postgres replication slot (frees retained WAL; the next run
    re-backfills). Never done implicitly."""
    from syncengine.config.models import PostgresSourceConfig
    from syncengine.sources.postgres.admin import default_name, drop_slot

    config, _ = load_selected(config_path, pipeline)
    source = config.pipelines[pipeline].source
    if not isinstance(source, PostgresSourceConfig) or source.mode != "cdc":
        raise UsageError(
            f"pipeline '{pipeline}' has no replication slot (not a Postgres cdc source)"
        )
    slot = source.slot or default_name(pipeline)
    if not yes:
        click.confirm(f"drop replication slot '{slot}' (the next run re-backfills)?", abort=True)
    state = open_state(config.state)
    with state.lock(pipeline, "drop-slot"):
        dropped = asyncio.run(drop_slot(source.dsn.get_secret_value(), slot))
        _forget_positions(config, pipeline, state)
    click.echo(
        f"{pipeline}: slot '{slot}' {'dropped' if dropped else 'did not exist'}; checkpoints reset"
    )
