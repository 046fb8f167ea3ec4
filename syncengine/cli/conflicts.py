"""``syncengine conflicts list|show|resolve``: the manual conflict queue for people."""

from __future__ import annotations

import asyncio
import getpass
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
from syncengine.state import Conflict, ConflictQueue, StateStore, open_state

if TYPE_CHECKING:
    from rich.table import Table

    from syncengine.config.models import Config
    from syncengine.conflicts.manual import Choice, Resolution


@click.group()
def conflicts() -> None:
    """Review and resolve conflicts parked by the `manual` strategy."""


def as_dict(conflict: Conflict, state: ConflictQueue | None = None) -> dict[str, Any]:
    """A conflict as the JSON object ``list --json`` prints (rows as objects, null = absent)."""
    from syncengine.conflicts import queue
    from syncengine.conflicts.rows import loads

    out = {
        "id": conflict.id,
        "pipeline": conflict.pipeline,
        "table": conflict.table,
        "key": loads(conflict.key),
        "base": loads(conflict.base),
        "local": loads(conflict.local),
        "remote": loads(conflict.remote),
        "status": conflict.status,
        "created_at": conflict.created_at,
        "position": queue.position_of(conflict),
    }
    if state is not None and conflict.id is not None:
        out["held_changes"] = len(state.held_changes(conflict.id))
    return out


@conflicts.command("list")
@config_argument
@pipeline_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--all", "everything", is_flag=True, help="Include resolved conflicts.")
@expected_errors
def list_conflicts(config_path: str, pipeline: str | None, as_json: bool, everything: bool) -> None:
    """Parked conflicts (pending unless --all), oldest first."""
    from rich.console import Console
    from rich.table import Table

    config, names = load_selected(config_path, pipeline)
    note_worker_local(config, "manual conflicts")
    state = open_state(config.state)
    found = [
        c
        for name in names
        for c in state.list_conflicts(name, status=None if everything else "pending")
    ]
    if as_json:
        click.echo(json.dumps([as_dict(c, state) for c in found], indent=2, default=str))
        return
    if not found:
        click.echo("no conflicts")
        return
    table = Table(title="conflicts")
    for column in ("id", "pipeline", "table", "key", "status", "held", "created"):
        table.add_column(column)
    for c in found:
        held = str(len(state.held_changes(c.id))) if c.id is not None else "0"
        table.add_row(
            str(c.id), c.pipeline, c.table, c.key, c.status, held, str(c.created_at or "")
        )
    Console().print(table)


@conflicts.command("show")
@config_argument
@click.argument("conflict_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@expected_errors
def show(config_path: str, conflict_id: int, as_json: bool) -> None:
    """One conflict: base, target (local) and source (remote) side by side."""
    from rich.console import Console

    config = _config(config_path)
    state = open_state(config.state)
    conflict = state.get_conflict(conflict_id)
    if conflict is None:
        raise UsageError(f"no conflict with id {conflict_id}", hint="see `conflicts list`")
    if as_json:
        out = as_dict(conflict, state)
        out["delta"] = {
            k: v for k, v in json.loads(conflict.delta or "{}").items() if k != "schema"
        }
        click.echo(json.dumps(out, indent=2, default=str))
        return
    Console().print(side_by_side(conflict, len(state.held_changes(conflict_id))))


def side_by_side(conflict: Conflict, held: int) -> Table:
    """Fields as rows; base | local | remote as columns; changed cells highlighted."""
    from rich.table import Table

    base, local, remote = (_row(t) for t in (conflict.base, conflict.local, conflict.remote))
    title = (
        f"conflict {conflict.id} · {conflict.pipeline}.{conflict.table} {conflict.key} · "
        f"{conflict.status} · {held} change(s) held"
    )
    table = Table(title=title)
    table.add_column("field", style="bold")
    for name in ("base (last synced)", "local (target now)", "remote (incoming)"):
        table.add_column(name)
    fields: list[str] = []
    for doc in (base, local, remote):
        fields.extend(k for k in (doc or {}) if k not in fields)
    if not fields:
        fields = ["(row)"]
    for name in fields:
        origin = _cell(base, name)
        cells = [origin]
        for doc in (local, remote):
            value = _cell(doc, name)
            cells.append(f"[yellow]{value}[/yellow]" if value != origin else value)
        table.add_row(name, *cells)
    return table


def _row(text: str | None) -> dict[str, Any] | None:
    """One side of a conflict as stored: a row as a JSON object, or null where there is no row."""
    from syncengine.conflicts.rows import loads

    value = loads(text)
    return value if isinstance(value, dict) else None


def _cell(doc: dict[str, Any] | None, name: str) -> str:
    if doc is None:
        return "(absent)"
    if name not in doc:
        return ""
    value = doc[name]
    return json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)


@conflicts.command("resolve")
@config_argument
@click.argument("conflict_id", metavar="ID", type=int)
@click.option(
    "--take",
    type=click.Choice(["local", "remote", "merged"]),
    required=True,
    help="local: keep the target row; remote: the source's; merged: field-level merge "
    "(or --merged-json).",
)
@click.option("--merged-json", default=None, help="With --take merged: the whole row as JSON.")
@expected_errors
def resolve(config_path: str, conflict_id: int, take: Choice, merged_json: str | None) -> None:
    """Apply a choice to the target and release the changes held behind the conflict."""
    if merged_json is not None and take != "merged":
        raise UsageError("--merged-json goes with --take merged")
    config = _config(config_path)
    state = open_state(config.state)
    conflict = state.get_conflict(conflict_id)
    if conflict is None:
        raise UsageError(f"no conflict with id {conflict_id}", hint="see `conflicts list`")
    if conflict.pipeline not in config.pipelines:
        raise UsageError(f"conflict {conflict_id} belongs to pipeline '{conflict.pipeline}', "
                         "which this config does not define")  # fmt: skip
    done = asyncio.run(_resolve(config, state, conflict, take, merged_json))
    click.echo(
        f"resolved conflict {done.conflict_id} ({conflict.table} {conflict.key}): took {take}; "
        f"released {done.released} held change(s)"
    )


async def _resolve(
    config: Config, state: StateStore, conflict: Conflict, take: Choice, merged: str | None
) -> Resolution:
    from syncengine.conflicts.manual import resolve_in_config

    decided_by = f"cli:{_user()}"
    return await resolve_in_config(config.pipelines, state, conflict, take, decided_by, merged)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _config(config_path: str) -> Config:
    config, _ = load_selected(config_path, None)
    return config
