"""A table's snapshot applied on a second connection (``PostgresTarget.beside``) while the
stream's transaction writing the same key is still open: the snapshot row, read before the
stream's change, must not overwrite it once that transaction commits.

Without the per-table lock (targets/postgres/beside.py) the lane's fence probe runs before the
stream's fence row is committed, finds nothing newer, and its ``INSERT … ON CONFLICT DO
UPDATE`` waits for the stream's row lock, then writes the older value over the newer one."""

from __future__ import annotations

import asyncio
from typing import Any

from syncengine.changes import DENSE_FENCE, OP_READ, ChangeBatch
from syncengine.conflicts import ConflictResolver
from syncengine.runtime.tableops import as_updates
from syncengine.targets.base import Checkpoint
from tests.integration.conflicts.conflicts_env import Env, batch, row


def at(rows: list[dict[str, Any]], ops: list[str], position: int, **meta: Any) -> ChangeBatch:
    built = batch(rows, ops, position)
    return ChangeBatch(built.table, built.data, built.key, {**built.meta, **meta})


def test_a_snapshot_row_on_the_second_connection_never_overwrites_a_newer_stream_change(
    pg_target_dsn, tmp_path
):
    async def scenario() -> dict[int, tuple[str, int]]:
        env = await Env("postgres", {"dsn": pg_target_dsn}, tmp_path / "s.db").open()
        env.resolver = ConflictResolver(
            "p", env.target, env.state, env.conflicts, fence=True, stream="s"
        )
        lane = env.target.beside()  # type: ignore[attr-defined]
        await lane.open()  # (its first connection waits for every open transaction: DDL)
        try:
            first = at([row(1, "v0", 0, 0), row(2, "v0", 0, 0)], ["c", "c"], 1)
            resolved = await env.resolver.resolve(env.spec, first)
            await env.target.apply([resolved.write], Checkpoint("s", "0000000000000002"))
            env.target.shared_tables.add("items")  # type: ignore[attr-defined]

            # the stream's transaction: key 1 updated at position 9, held open before commit
            store = env.target._store  # type: ignore[attr-defined]
            write_checkpoint = store.write_checkpoint
            reached, release = asyncio.Event(), asyncio.Event()

            async def held(conn: Any, checkpoint: Checkpoint) -> None:
                await write_checkpoint(conn, checkpoint)
                reached.set()
                await release.wait()

            store.write_checkpoint = held
            change = at([row(1, "new", 9, 9)], ["u"], 9, **{DENSE_FENCE: True})
            resolved = await env.resolver.resolve(env.spec, change)
            stream = asyncio.create_task(
                env.target.apply([resolved.write], Checkpoint("s", "0000000000000009"))
            )
            await asyncio.wait_for(reached.wait(), 10)

            # the snapshot, read at position 5 (before the change), applied beside it
            snapshot = as_updates(at([row(1, "old", 5, 5), row(2, "read", 5, 5)], [OP_READ] * 2, 5))
            resolved = await env.resolver.resolve(env.spec, snapshot)
            copied = asyncio.create_task(lane.apply([resolved.write], None))
            await asyncio.sleep(0.5)
            assert not copied.done()  # it waits for the stream's transaction on the table

            release.set()
            await stream
            await copied
            return env.rows()
        finally:
            await lane.close()
            await env.close()

    rows = asyncio.run(scenario())
    assert rows == {1: ("new", 9), 2: ("read", 5)}
