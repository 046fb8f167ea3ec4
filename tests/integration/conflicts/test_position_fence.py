"""The position fence against real targets: a replayed change older than what the shadow has
seen is dropped, a deleted key's tombstone keeps it deleted, snapshot rows always apply."""

from __future__ import annotations

import asyncio
from typing import Any

from syncengine.conflicts import ConflictResolver
from tests.integration.conflicts.conflicts_env import Env, row


async def replay(env: Env, rows: list[dict[str, Any]], ops: list[str], position: int) -> None:
    """Deliver changes again as if the source resent them from ``position``."""
    current = env.position
    env.position = position - 1
    await env.run(rows, ops)
    env.position = max(current, env.position)


async def fenced(kind: str, where: dict[str, str], path: Any, fence: bool = True) -> Env:
    env = await Env(kind, where, path, strategy="remote").open()
    env.resolver = ConflictResolver("p", env.target, env.state, env.conflicts, fence=fence)
    return env


def test_replayed_older_changes_are_dropped(target_where, tmp_path):
    kind, where = target_where

    async def scenario() -> None:
        env = await fenced(kind, where, tmp_path / "state.db")
        try:
            await env.run([row(1, "a", 1, 1), row(2, "b", 1, 1)], ["c", "c"])  # positions 1, 2
            await env.run([row(1, "a", 2, 2)], ["u"])  # 3
            await env.run([{"id": 2}], ["d"])  # 4
            assert env.rows() == {1: ("a", 2)}
            # a restart resends everything from position 1: nothing moves back in time
            await replay(env, [row(1, "a", 1, 1), row(2, "b", 1, 1)], ["c", "c"], 1)
            assert env.rows() == {1: ("a", 2)}
            await replay(env, [row(1, "a", 2, 2)], ["u"], 3)  # the same change again
            assert env.rows() == {1: ("a", 2)}
            # newer changes still apply, to live and to deleted keys
            await env.run([row(1, "a", 3, 3), row(2, "back", 5, 3)], ["u", "c"])
            assert env.rows() == {1: ("a", 3), 2: ("back", 5)}
        finally:
            await env.close()

    asyncio.run(scenario())


def test_snapshot_rows_are_never_fenced(target_where, tmp_path):
    """A re-backfill reads the source's current state: its rows apply whatever position they
    carry (and a later stream change is compared with the snapshot's position)."""
    kind, where = target_where

    async def scenario() -> None:
        env = await fenced(kind, where, tmp_path / "state.db")
        try:
            env.position = 10
            await env.run([row(1, "stream", 1, 1)], ["c"])  # position 11
            await replay(env, [row(1, "snapshot", 2, 2)], ["r"], 5)
            assert env.rows() == {1: ("snapshot", 2)}
            await replay(env, [row(1, "older", 0, 0)], ["u"], 4)  # before the snapshot: stale
            assert env.rows() == {1: ("snapshot", 2)}
        finally:
            await env.close()

    asyncio.run(scenario())


def test_delete_of_a_key_the_target_never_had_fences_its_older_changes(target_where, tmp_path):
    """A resumed Postgres snapshot sends the deletes made since its snapshot position ahead of
    the replay (F15, ghost rows): for a key the target never held, that delete must still leave
    a tombstone at its position, so the replay's older changes stay out and later ones apply."""
    kind, where = target_where

    async def scenario() -> None:
        env = await fenced(kind, where, tmp_path / "state.db")
        try:
            env.position = 10
            await env.run([{"id": 7}], ["d"])  # position 11, key 7 absent at the target
            found = await env.target.read_shadow("items", ['{"id":7}'])
            assert found.to_pylist() == [
                {"row_key": '{"id":7}', "row_hash": None, "base": None,
                 "position": f"{11:016X}"}
            ]  # fmt: skip
            await replay(env, [row(7, "ghost", 1, 1)], ["c"], 3)
            await replay(env, [row(7, "ghost", 2, 2)], ["u"], 6)
            assert env.rows() == {}
            await env.run([row(7, "back", 3, 3)], ["c"])  # after the delete: applies
            assert env.rows() == {7: ("back", 3)}
        finally:
            await env.close()

    asyncio.run(scenario())


def test_without_the_fence_a_replay_goes_back_in_time(target_where, tmp_path):
    """What the fence prevents (incremental sources, whose positions do not sort, run so)."""
    kind, where = target_where

    async def scenario() -> None:
        env = await fenced(kind, where, tmp_path / "state.db", fence=False)
        try:
            await env.run([row(1, "a", 1, 1)], ["c"])
            await env.run([row(1, "a", 2, 2)], ["u"])
            await replay(env, [row(1, "a", 1, 1)], ["c"], 1)
            assert env.rows() == {1: ("a", 1)}
        finally:
            await env.close()

    asyncio.run(scenario())


def test_tombstones_the_checkpoint_passed_are_purged(pg_target_dsn, tmp_path):
    from syncengine.targets.postgres import state

    async def scenario() -> None:
        env = await fenced("postgres", {"dsn": pg_target_dsn}, tmp_path / "state.db")
        try:
            await env.run([row(1, "a", 1, 1), row(2, "b", 1, 1)], ["c", "c"])  # 1, 2
            await env.run([{"id": 1}], ["d"])  # 3: a tombstone
            await env.run([{"id": 2}], ["d"])  # 4: another
            conn = await env.target._connection()
            await state.purge_tombstones(conn, "p", f"{4:016X}")
            found = await env.target.read_shadow("items", ['{"id":1}', '{"id":2}'])
            assert found.column("row_key").to_pylist() == ['{"id":2}']
        finally:
            await env.close()

    asyncio.run(scenario())
