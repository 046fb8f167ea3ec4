"""Manual conflicts against real targets: park, hold, other keys flow, restart, resolve by CLI."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from syncengine.cli.main import cli
from tests.integration.conflicts.conflicts_env import Env, row


def write_config(tmp_path: Path, kind: str, where: dict[str, str], state: Path) -> Path:
    target = (
        {"type": "postgres", "dsn": where["dsn"]}
        if kind == "postgres"
        else {"type": "mongo", "uri": where["uri"], "database": where["database"]}
    )
    config = {
        "state": str(state),
        "pipelines": {
            "p": {
                "source": {"type": "postgres", "dsn": "postgresql://x@127.0.0.1:1/x",
                           "tables": ["public.items"]},
                "target": target,
                "conflicts": {"strategy": "manual"},
            }
        },
    }  # fmt: skip
    path = tmp_path / "sync.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_manual_park_hold_restart_resolve(target_where, tmp_path):
    kind, where = target_where
    state = tmp_path / "state.db"
    config = write_config(tmp_path, kind, where, state)
    runner = CliRunner()

    async def before_restart() -> None:
        env = await Env(kind, where, state, strategy="manual").open()
        try:
            await env.run([row(i, f"n{i}", i, 10) for i in range(1, 5)], ["r"] * 4)
            env.edit(1, name="hand")
            env.edit(2, qty=20)
            first = await env.run([row(1, "src1", 1, 20), row(3, "flows", 3, 20)], ["u", "u"])
            assert (first.parked, first.held) == (1, 0)
            held = await env.run([row(1, "src2", 11, 21), row(4, "also", 4, 21)], ["u", "u"])
            assert (held.held, held.conflicts) == (1, 0)
            assert env.rows() == {1: ("hand", 1), 2: ("n2", 20), 3: ("flows", 3), 4: ("also", 4)}
        finally:
            await env.close()

    async def after_restart() -> None:
        env = await Env(kind, where, state, strategy="manual").open()
        env.position = 100
        try:
            # still held after the restart; a second conflict on key 2 parks independently
            more = await env.run([row(1, "src3", 12, 22), row(2, "src", 2, 22)], ["u", "u"])
            assert (more.held, more.parked) == (1, 1)
        finally:
            await env.close()

    asyncio.run(before_restart())
    asyncio.run(after_restart())

    listed = runner.invoke(cli, ["conflicts", "list", str(config), "--json"])
    assert listed.exit_code == 0, listed.output
    conflicts = json.loads(listed.output)
    assert [(c["key"], c["table"], c["pipeline"]) for c in conflicts] == [
        ({"id": 1}, "items", "p"),
        ({"id": 2}, "items", "p"),
    ]
    one = conflicts[0]
    assert (one["base"]["name"], one["local"]["name"], one["remote"]["name"]) == (
        "n1", "hand", "src1",
    )  # fmt: skip
    assert one["held_changes"] == 2

    shown = runner.invoke(cli, ["conflicts", "show", str(config), str(one["id"])])
    assert shown.exit_code == 0 and "hand" in shown.output and "src1" in shown.output

    done = runner.invoke(
        cli, ["conflicts", "resolve", str(config), str(one["id"]), "--take", "local"]
    )
    assert done.exit_code == 0, done.output
    assert "released 2 held change(s)" in done.output
    # local "hand", then src2 / 11, then src3 / 12: the held changes drained in order
    target_rows = _rows(kind, where, state)
    assert target_rows[1] == ("src3", 12)
    assert target_rows[2] == ("n2", 20)  # still parked

    two = conflicts[1]
    merged = json.dumps({"name": "picked", "qty": 99, "updated_at": "2024-01-01T00:50:00Z"})
    done = runner.invoke(
        cli,
        ["conflicts", "resolve", str(config), str(two["id"]), "--take", "merged",
         "--merged-json", merged],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert _rows(kind, where, state)[2] == ("picked", 99)

    again = runner.invoke(
        cli, ["conflicts", "resolve", str(config), str(two["id"]), "--take", "local"]
    )
    assert again.exit_code == 2 and "already resolved" in again.output
    assert json.loads(runner.invoke(cli, ["conflicts", "list", str(config), "--json"]).output) == []

    async def flows_again() -> None:
        env = await Env(kind, where, state, strategy="manual").open()
        env.position = 200
        try:
            r = await env.run([row(1, "later", 13, 30), row(2, "later", 2, 30)], ["u", "u"])
            assert (r.conflicts, r.held) == (0, 0)
            assert env.rows()[1] == ("later", 13) and env.rows()[2] == ("later", 2)
        finally:
            await env.close()

    asyncio.run(flows_again())


def _rows(kind: str, where: dict[str, str], state: Path) -> dict[int, tuple[str, int]]:
    return Env(kind, where, state).rows()
